/** The console's one stylesheet, served from /static/console.css (the CSP allows styles from the console only). */
export const CONSOLE_CSS = `
:root { color-scheme: light; --ink: #1a1a1a; --muted: #555; --line: #c8c8c8; --ok: #0a6b2d; --bad: #a4161a; --warn: #7a4d00; --accent: #1d4f91; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: #fff; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); background: #f4f6f9; }
.brand { margin: 0; font-weight: 600; }
nav { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
nav a { color: var(--accent); }
main { padding: 1rem 1.2rem 3rem; max-width: 100rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
h2.ok { color: var(--ok); } h2.bad { color: var(--bad); }
.ok { color: var(--ok); } .error { color: var(--bad); font-weight: 600; } .warning { color: var(--warn); font-weight: 600; } .info { color: var(--ok); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd, dl.detail dd { margin: 0; overflow-wrap: anywhere; }
dl.detail { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; font-size: .85rem; }
form.stack { display: grid; gap: .4rem; max-width: 60rem; }
form.inline { display: inline; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .3rem .8rem; align-items: end; }
fieldset { border: 1px solid var(--line); padding: .6rem .8rem; }
fieldset.actions label { margin-right: .8rem; white-space: nowrap; }
input, select, button { font: inherit; padding: .3rem .5rem; }
button { background: var(--accent); color: #fff; border: 0; border-radius: 3px; cursor: pointer; margin: .2rem .2rem .2rem 0; }
nav button { background: transparent; color: var(--accent); text-decoration: underline; padding: 0; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .4rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
code { font-size: .85em; overflow-wrap: anywhere; }
pre.summary { white-space: pre-wrap; background: #f6f6f6; padding: .6rem; font-size: .8rem; }
svg.chart rect { fill: var(--accent); }
figure { margin: .5rem 0 1rem; } figcaption { color: var(--muted); font-size: .85rem; }
ul.findings li { margin-bottom: .6rem; }
form.ack { display: flex; gap: .4rem; align-items: center; flex-wrap: wrap; margin-top: .3rem; }
:focus-visible { outline: 3px solid #f2a900; outline-offset: 2px; }
main > output.progress { display: none; color: var(--muted); }
main > output.progress:last-of-type { display: block; margin: .3rem 0 .8rem; }
@media print { header, .noprint, form { display: none; } main { padding: 0; } }
`;
