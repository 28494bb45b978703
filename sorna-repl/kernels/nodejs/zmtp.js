'use strict';
// A minimal ZeroMQ (ZMTP 3.0, NULL mechanism) PUSH/PULL endpoint in plain Node, so the nodejs
// kernel needs no native binding: Debian ships none, and npm's downloads prebuilt binaries.
//
// Only what the Sorna REPL protocol uses: the daemon binds (ipc:// or tcp://) one PULL socket
// for input and one PUSH socket for output; peers connect. Messages are arrays of Buffers.

const fs = require('fs');
const net = require('net');

const GREETING_SIZE = 64;
const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;

function greeting() {
  const g = Buffer.alloc(GREETING_SIZE);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3; // version 3.0
  g[11] = 0;
  g.write('NULL', 12, 'ascii');
  return g; // as-server = 0, filler = 0
}

function frame(body, flags) {
  if (body.length > 255) {
    const head = Buffer.alloc(9);
    head[0] = flags | FLAG_LONG;
    head.writeBigUInt64BE(BigInt(body.length), 1);
    return [head, body];
  }
  return [Buffer.from([flags, body.length]), body];
}

function command(name, props) {
  const parts = [Buffer.from([name.length]), Buffer.from(name, 'ascii')];
  for (const [key, value] of Object.entries(props || {})) {
    const v = Buffer.from(value);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(v.length);
    parts.push(Buffer.from([key.length]), Buffer.from(key, 'ascii'), len, v);
  }
  return Buffer.concat(frame(Buffer.concat(parts), FLAG_COMMAND));
}

function encodeMessage(parts) {
  const out = [];
  parts.forEach((p, i) => {
    const body = Buffer.isBuffer(p) ? p : Buffer.from(String(p), 'utf8');
    out.push(...frame(body, i < parts.length - 1 ? FLAG_MORE : 0));
  });
  return Buffer.concat(out);
}

// One accepted connection: greeting, READY exchange, then frames.
class Peer {
  constructor(sock, socketType, onReady, onMessage, onClose) {
    this.sock = sock;
    this.ready = false;
    this.buf = Buffer.alloc(0);
    this.gotGreeting = false;
    this.parts = [];
    this.onReady = onReady;
    this.onMessage = onMessage;
    sock.setNoDelay && sock.setNoDelay(true);
    sock.on('data', (d) => this.feed(d));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => onClose(this));
    sock.write(greeting());
    sock.write(command('READY', { 'Socket-Type': socketType }));
  }

  feed(data) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    for (;;) {
      if (!this.gotGreeting) {
        if (this.buf.length < GREETING_SIZE) return;
        if (this.buf[0] !== 0xff || this.buf[9] !== 0x7f || this.buf[10] < 3) {
          this.sock.destroy();
          return;
        }
        this.buf = this.buf.subarray(GREETING_SIZE);
        this.gotGreeting = true;
        continue;
      }
      if (this.buf.length < 2) return;
      const flags = this.buf[0];
      let size;
      let off;
      if (flags & FLAG_LONG) {
        if (this.buf.length < 9) return;
        size = Number(this.buf.readBigUInt64BE(1));
        off = 9;
      } else {
        size = this.buf[1];
        off = 2;
      }
      if (this.buf.length < off + size) return;
      const body = Buffer.from(this.buf.subarray(off, off + size));
      this.buf = this.buf.subarray(off + size);
      if (flags & FLAG_COMMAND) {
        this.handleCommand(body);
      } else {
        this.parts.push(body);
        if (!(flags & FLAG_MORE)) {
          const msg = this.parts;
          this.parts = [];
          this.onMessage(msg);
        }
      }
    }
  }

  handleCommand(body) {
    const name = body.subarray(1, 1 + body[0]).toString('ascii');
    if (name === 'READY' && !this.ready) {
      this.ready = true;
      this.onReady(this);
    } else if (name === 'PING') {
      // PONG echoes the ping's context (after the 2-byte TTL).
      const ctx = body.subarray(1 + body[0] + 2);
      const pong = Buffer.concat([Buffer.from([4]), Buffer.from('PONG'), ctx]);
      this.sock.write(Buffer.concat(frame(pong, FLAG_COMMAND)));
    }
  }

  send(buf) {
    return this.sock.write(buf);
  }
}

function listen(server, address) {
  const m = /^(ipc|tcp):\/\/(.+)$/.exec(address);
  if (!m) throw new Error(`unsupported address ${address}`);
  // A kernel that cannot bind says why in one line (docker logs), then exits.
  server.on('error', (e) => {
    process.stderr.write(`sorna nodejs kernel cannot start: cannot bind ${address}: ${e.message}\n`);
    process.exit(1);
  });
  if (m[1] === 'ipc') {
    try {
      fs.unlinkSync(m[2]);
    } catch (e) {
      // no stale socket
    }
    server.listen(m[2]);
    return () => {
      try {
        fs.unlinkSync(m[2]);
      } catch (e) {
        // already gone
      }
    };
  }
  const hp = /^(.*):(\d+)$/.exec(m[2]);
  if (!hp) throw new Error(`bad tcp address ${address}`);
  const host = hp[1] === '*' ? undefined : hp[1];
  server.listen(Number(hp[2]), host);
  return () => {};
}

// PULL: bind, call onMessage(parts) for every message from any peer.
class PullSocket {
  constructor(address, onMessage) {
    this.server = net.createServer((sock) => {
      new Peer(sock, 'PULL', () => {}, onMessage, () => {});
    });
    this.cleanup = listen(this.server, address);
  }

  close() {
    this.server.close();
    this.cleanup();
  }
}

// PUSH: bind; messages queue until a peer is ready, then go round-robin to ready peers.
class PushSocket {
  constructor(address) {
    this.peers = [];
    this.queue = [];
    this.next = 0;
    this.server = net.createServer((sock) => {
      new Peer(
        sock,
        'PUSH',
        (peer) => {
          this.peers.push(peer);
          this.flush();
        },
        () => {},
        (peer) => {
          this.peers = this.peers.filter((p) => p !== peer);
        },
      );
    });
    this.cleanup = listen(this.server, address);
  }

  send(parts) {
    this.queue.push(encodeMessage(parts));
    this.flush();
  }

  flush() {
    while (this.queue.length && this.peers.length) {
      const peer = this.peers[this.next++ % this.peers.length];
      peer.send(this.queue.shift());
    }
  }

  close() {
    this.server.close();
    this.cleanup();
  }
}

module.exports = { PullSocket, PushSocket, encodeMessage };
