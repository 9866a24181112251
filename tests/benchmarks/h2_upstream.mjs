// The upstream for bench_http2.py: a fake OpenAI /v1/chat/completions over TLS on 127.0.0.1,
// HTTP/2 and HTTP/1.1 on the same port (ALPN), plus relays that delay each direction by RTT/2.
//
// Node's http2 module (nghttp2, in C) and its HTTP/1.1 parser (llhttp) keep the server's own
// cost far below the Python client's, so the figures measure the client and the protocol.
//
//   node h2_upstream.mjs CERT KEY CHUNKS CHUNK_DELAY_MS RTT_MS BIG_WINDOW
//
// Two servers: "std" keeps HTTP/2's default flow-control windows (65,535 bytes for the
// connection and for each stream, RFC 9113 6.9.2); "big" advertises BIG_WINDOW for both.
// With RTT_MS > 0 each gets a relay in front. Prints one JSON line with the ports, then answers
// "stats" lines on stdin with a JSON line (and resets the counters), exits on "stop" or EOF.
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import readline from "node:readline";

const [cert, key, chunksArg, delayArg, rttArg, bigWindowArg] = process.argv.slice(2);
const CHUNKS = Number(chunksArg);
const CHUNK_DELAY_MS = Number(delayArg);
const RTT_MS = Number(rttArg);
const BIG_WINDOW = Number(bigWindowArg);

const chunk = (delta, finish) =>
  `data: ${JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1700000000,
    model: "bench/model",
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
const ROLE_EVENT = chunk({ role: "assistant", content: "" }, null);
const CONTENT_EVENT = chunk({ content: "word" }, null);
const FINISH_EVENT = chunk({}, "stop");
const DONE_EVENT = "data: [DONE]\n\n";
const COMPLETION = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1700000000,
  model: "bench/model",
  choices: [
    { index: 0, message: { role: "assistant", content: "word ".repeat(CHUNKS) }, finish_reason: "stop" },
  ],
  usage: { prompt_tokens: 1000, completion_tokens: CHUNKS, total_tokens: 1000 + CHUNKS },
});

let stats = { requests: 0, tls_connections: 0, versions: {}, bad: 0 };

function handle(req, res) {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(parts).toString("utf8"));
    } catch {
      stats.bad += 1;
      res.writeHead(400, { "content-type": "application/json" });
      res.end('{"error":{"message":"body is not JSON"}}');
      return;
    }
    stats.requests += 1;
    stats.versions[req.httpVersion] = (stats.versions[req.httpVersion] ?? 0) + 1;
    if (!body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(COMPLETION);
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(ROLE_EVENT);
    let sent = 0;
    const next = () => {
      if (sent < CHUNKS) {
        sent += 1;
        res.write(CONTENT_EVENT);
        setTimeout(next, CHUNK_DELAY_MS);
      } else {
        res.end(FINISH_EVENT + DONE_EVENT);
      }
    };
    setTimeout(next, CHUNK_DELAY_MS);
  });
}

function listen(window) {
  // MAX_CONCURRENT_STREAMS is sent explicitly (nginx's default, 128), as real front ends do:
  // httpcore2 allows one stream at a time until a server announces it.
  const settings = { maxConcurrentStreams: 128 };
  if (window !== null) settings.initialWindowSize = window;
  const options = { cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true, settings };
  const server = http2.createSecureServer(options, handle);
  server.on("secureConnection", () => {
    stats.tls_connections += 1;
  });
  if (window !== null) server.on("session", (session) => session.setLocalWindowSize(window));
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

// One direction of a relayed connection: every piece is delivered `delay` ms after it
// arrived (never before `notBefore`), in order; one timer per direction at a time.
function delayedPipe(from, to, delay, notBefore) {
  const queue = [];
  let timer = null;
  const flush = () => {
    timer = null;
    const now = performance.now();
    while (queue.length > 0 && queue[0].due <= now + 0.5) {
      const item = queue.shift();
      if (item.data === null) to.end();
      else to.write(item.data);
    }
    if (queue.length > 0) timer = setTimeout(flush, queue[0].due - now);
  };
  const push = (data) => {
    queue.push({ due: Math.max(performance.now() + delay, notBefore), data });
    if (timer === null) timer = setTimeout(flush, queue[0].due - performance.now());
  };
  from.on("data", (data) => push(data));
  from.on("end", () => push(null));
  from.on("error", () => to.destroy());
}

function relay(targetPort) {
  const half = RTT_MS / 2;
  const server = net.createServer({ noDelay: true }, (client) => {
    // The client's connect() returned at once; a real TCP handshake costs one round trip
    // before its first bytes can leave, so they are held back that much longer.
    const notBefore = performance.now() + RTT_MS + half;
    const upstream = net.connect({ port: targetPort, host: "127.0.0.1", noDelay: true });
    delayedPipe(client, upstream, half, notBefore);
    delayedPipe(upstream, client, half, 0);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

const ports = { std: await listen(null), big: await listen(BIG_WINDOW) };
if (RTT_MS > 0) {
  ports.std = await relay(ports.std);
  ports.big = await relay(ports.big);
}
process.stdout.write(`${JSON.stringify(ports)}\n`);

const commands = readline.createInterface({ input: process.stdin });
commands.on("line", (line) => {
  if (line === "stats") {
    const usage = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ ...stats, cpu_us: usage.user + usage.system })}\n`);
    stats = { requests: 0, tls_connections: 0, versions: {}, bad: 0 };
  } else if (line === "stop") {
    process.exit(0);
  }
});
commands.on("close", () => process.exit(0));
