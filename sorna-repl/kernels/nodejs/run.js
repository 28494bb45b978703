'use strict';
// Sorna REPL daemon for Node.js (PROTOCOLS.md section 3).
//
// Binds PULL (input ops) and PUSH (output ops) at $SORNA_REPL_INPUT / $SORNA_REPL_OUTPUT
// (default: TCP on the REPL ports of sorna.common.constants; a test checks that they agree),
// using the plain-JS ZMTP endpoint of zmtp.js.
// `code` runs in a persistent `vm` context held by a child process (executor.js), so an
// interrupt can stop a busy loop without losing the daemon, and a crashed executor is
// replaced. `build`/`exec` run commands (`*`: node main.js). `code`, `build` and `exec`
// queue in FIFO order; `input`, `complete`, `interrupt` and `status` are served at once.
// Every run ends with exactly one `finished` (`build-finished` for builds).

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');
const { PullSocket, PushSocket } = require('./zmtp');

const INPUT_ADDR = process.env.SORNA_REPL_INPUT || 'tcp://*:2000';
const OUTPUT_ADDR = process.env.SORNA_REPL_OUTPUT || 'tcp://*:2001';
const OUTPUT_LIMIT = Number(process.env.SORNA_REPL_OUTPUT_LIMIT) || 10 * 1024 * 1024;
const FLUSH_MS = 10;
const FLUSH_BYTES = 64 * 1024;
const INTERRUPT_LINE = '\u0000interrupt';
const WORK_DIR = process.cwd();

const push = new PushSocket(OUTPUT_ADDR);

// -- output: coalesced in small time slices, capped per run --------------------------------

let pending = []; // [op, text] with adjacent same-op texts merged
let pendingBytes = 0;
let flushTimer = null;
let runBytes = 0;
let truncated = false;

function flush() {
  if (flushTimer) {
    clearTimeout(flushTimer);
    flushTimer = null;
  }
  for (const [op, text] of pending) push.send([op, Buffer.from(text, 'utf8')]);
  pending = [];
  pendingBytes = 0;
}

function stream(op, text) {
  if (!text) return;
  if (truncated) return;
  const n = Buffer.byteLength(text, 'utf8');
  if (runBytes + n > OUTPUT_LIMIT) {
    const room = Math.max(0, OUTPUT_LIMIT - runBytes);
    text = Buffer.from(text, 'utf8').subarray(0, room).toString('utf8');
    truncated = true;
  }
  runBytes += n;
  const last = pending[pending.length - 1];
  if (last && last[0] === op) last[1] += text;
  else pending.push([op, text]);
  pendingBytes += n;
  if (truncated) {
    pending.push(['stderr', `\n[output truncated: more than ${OUTPUT_LIMIT} bytes]\n`]);
    flush();
  } else if (pendingBytes >= FLUSH_BYTES) {
    flush();
  } else if (!flushTimer) {
    flushTimer = setTimeout(flush, FLUSH_MS);
  }
}

function sendNow(op, payload) {
  flush();
  push.send([op, payload === undefined ? Buffer.alloc(0) : Buffer.from(payload, 'utf8')]);
}

// -- the executor (persistent vm context) ---------------------------------------------------

let executor = null;
let executorReady = null;
let nextId = 1;
const waiters = new Map(); // id -> resolve

function startExecutor() {
  const child = childProcess.fork(path.join(__dirname, 'executor.js'), [], {
    stdio: ['pipe', 'pipe', 'inherit', 'ipc'],
    env: { ...process.env, SORNA_WORK_DIR: WORK_DIR },
  });
  let buf = '';
  let readyResolve;
  executorReady = new Promise((resolve) => {
    readyResolve = resolve;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (data) => {
    buf += data;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let ev;
      try {
        ev = JSON.parse(line);
      } catch (e) {
        continue;
      }
      onExecutorEvent(ev, readyResolve);
    }
  });
  child.stdin.on('error', () => {});
  child.on('exit', (code, signal) => {
    if (executor !== child) return;
    executor = null;
    const why = signal ? `signal ${signal}` : `exit status ${code}`;
    if (current && current.kind === 'code') {
      stream('stderr', `\nThe kernel's executor stopped (${why}); its state was reset.\n`);
    }
    for (const [id, resolve] of waiters) {
      waiters.delete(id);
      resolve(null);
    }
    startExecutor();
  });
  executor = child;
}

function onExecutorEvent(ev, readyResolve) {
  switch (ev.o) {
    case 'ready':
      readyResolve();
      break;
    case 'stdout':
    case 'stderr':
      stream(ev.o, ev.d);
      break;
    case 'waiting-input':
      if (current) current.waitingInput = true;
      sendNow('waiting-input', JSON.stringify(ev.d));
      break;
    case 'done':
    case 'completion': {
      const resolve = waiters.get(ev.id);
      if (resolve) {
        waiters.delete(ev.id);
        resolve(ev.o === 'completion' ? ev.d : true);
      }
      break;
    }
    default:
      break;
  }
}

async function askExecutor(msg) {
  await executorReady;
  const id = nextId++;
  const child = executor;
  return new Promise((resolve) => {
    waiters.set(id, resolve);
    child.send({ ...msg, id });
  });
}

// -- batch mode: commands as child processes -----------------------------------------------

function defaultCommand(kind) {
  if (kind === 'build') return null; // JavaScript needs no build step
  for (const name of ['main.js', 'index.js']) {
    if (fs.existsSync(path.join(WORK_DIR, name))) return [process.execPath, [name]];
  }
  return ['/bin/sh', ['-c', 'echo "nothing to run: no main.js or index.js" >&2; exit 1']];
}

function runCommand(kind, payload) {
  const cmd = payload.trim() === '*' || payload.trim() === '' ? defaultCommand(kind) : ['/bin/sh', ['-c', payload]];
  if (!cmd) return Promise.resolve();
  return new Promise((resolve) => {
    const proc = childProcess.spawn(cmd[0], cmd[1], { cwd: WORK_DIR, detached: true });
    current.proc = proc;
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (d) => stream('stdout', d));
    proc.stderr.on('data', (d) => stream('stderr', d));
    proc.stdin.on('error', () => {});
    proc.on('error', (e) => {
      stream('stderr', `${e.message}\n`);
      resolve();
    });
    proc.on('close', () => resolve());
  });
}

// -- the run queue --------------------------------------------------------------------------

const queue = [];
let current = null;

async function runOne(job) {
  current = { kind: job.op === 'code' ? 'code' : 'command', waitingInput: false, proc: null };
  runBytes = 0;
  truncated = false;
  try {
    if (job.op === 'code') {
      await askExecutor({ t: 'run', code: job.payload.toString('utf8') });
    } else {
      await runCommand(job.op, job.payload.toString('utf8'));
    }
  } catch (e) {
    stream('stderr', `${e && e.stack ? e.stack : e}\n`);
  } finally {
    current = null;
    sendNow(job.op === 'build' ? 'build-finished' : 'finished', '');
  }
}

let draining = false;
async function drain() {
  if (draining) return;
  draining = true;
  while (queue.length) await runOne(queue.shift());
  draining = false;
}

// -- input ops ------------------------------------------------------------------------------

function interrupt() {
  queue.length = 0; // an interrupt cancels what was queued behind the run, like Ctrl-C
  if (!current) return;
  if (current.kind === 'code') {
    if (current.waitingInput) {
      current.waitingInput = false;
      executor && executor.stdin.write(INTERRUPT_LINE + '\n');
    } else if (executor) {
      executor.kill('SIGINT');
    }
  } else if (current.proc && current.proc.pid) {
    try {
      process.kill(-current.proc.pid, 'SIGKILL');
    } catch (e) {
      // already gone
    }
  }
}

const handlers = {
  code: (payload) => {
    queue.push({ op: 'code', payload });
    drain();
  },
  build: (payload) => {
    queue.push({ op: 'build', payload });
    drain();
  },
  exec: (payload) => {
    queue.push({ op: 'exec', payload });
    drain();
  },
  input: (payload) => {
    if (!current) return;
    const line = payload.toString('utf8').replace(/\n$/, '') + '\n';
    if (current.kind === 'code') {
      current.waitingInput = false;
      executor && executor.stdin.write(line);
    } else if (current.proc) {
      current.proc.stdin.write(line);
    }
  },
  complete: async (payload) => {
    let items = [];
    if (!current) {
      let code = '';
      try {
        code = JSON.parse(payload.toString('utf8')).code || '';
      } catch (e) {
        code = payload.toString('utf8');
      }
      const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 2000));
      items = (await Promise.race([askExecutor({ t: 'complete', code }), timeout])) || [];
    }
    sendNow('completion', JSON.stringify(items));
  },
  interrupt: () => interrupt(),
  status: () => {
    sendNow('status', JSON.stringify({ busy: current !== null, runs_queued: queue.length }));
  },
};

const pull = new PullSocket(INPUT_ADDR, (parts) => {
  const op = parts[0] ? parts[0].toString('ascii') : '';
  const handler = Object.prototype.hasOwnProperty.call(handlers, op) ? handlers[op] : null;
  if (handler) handler(parts[1] || Buffer.alloc(0));
  else sendNow('log', JSON.stringify({ level: 'warning', message: `unknown op ${JSON.stringify(op)}` }));
});

function shutdown() {
  pull.close();
  push.close();
  if (executor) {
    const child = executor;
    executor = null;
    child.kill('SIGKILL');
  }
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

startExecutor();
