// Exit 0 when a container runtime (Docker, Podman, a remote DOCKER_HOST) answers testcontainers,
// 1 when none does. with-test-services.sh uses it to pick containers or local processes.
const timeout = setTimeout(() => process.exit(1), Number(process.env.CONTAINER_PROBE_TIMEOUT_MS ?? 5000));
let client = null;
try {
  const { getContainerRuntimeClient } = await import('testcontainers');
  client = await getContainerRuntimeClient();
} catch {
  // none answered
}
clearTimeout(timeout);
if (client) process.stderr.write(`container runtime answering at ${client.info?.containerRuntime?.host ?? 'its default socket'}\n`);
process.exit(client ? 0 : 1);
