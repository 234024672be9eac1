import { describe, expect, it } from 'vitest';
import { SignInThrottle } from '../../src/console/throttle.js';

describe('failed sign-ins', () => {
  it('stop a name or an address after five failures for the rest of fifteen minutes; success clears the name', () => {
    let t = 0;
    const th = new SignInThrottle(5, 15 * 60_000, () => t);
    const ann = ['account:ann', 'address:10.0.0.1'];
    for (let i = 0; i < 4; i++) th.failed(ann);
    expect(th.waitFor(ann)).toBe(0);
    th.failed(ann);
    t = 60_000;
    expect(th.waitFor(ann)).toBe(14 * 60_000);
    // Another name from the same address waits too; the same name from elsewhere as well.
    expect(th.waitFor(['account:bob', 'address:10.0.0.1'])).toBe(14 * 60_000);
    expect(th.waitFor(['account:ann', 'address:10.0.0.2'])).toBe(14 * 60_000);
    expect(th.waitFor(['account:bob', 'address:10.0.0.2'])).toBe(0);
    t = 15 * 60_000;
    expect(th.waitFor(ann)).toBe(0);
    th.failed(ann);
    th.succeeded(['account:ann']);
    expect(th.waitFor(['account:ann'])).toBe(0);
  });
});
