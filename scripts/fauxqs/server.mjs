// Starts the fauxqs SQS emulator on 127.0.0.1 only (port: FAUXQS_PORT, default 4577).
// fauxqs listens on 0.0.0.0; rewrite that host to loopback before it binds.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] && typeof args[0] === "object" && args[0].host === "0.0.0.0") {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (args[1] === "0.0.0.0") {
    args[1] = "127.0.0.1";
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const port = Number(process.env.FAUXQS_PORT ?? 4577);
const server = await startFauxqs({ port, logger: false, host: "localhost" });
console.log(`fauxqs listening on ${server.address} (pid ${process.pid})`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
