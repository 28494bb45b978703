'use strict';
// The nodejs kernel's executor: a child of run.js that holds the user's persistent `vm`
// context. It gets work over the IPC channel and reports over its fd 1 with synchronous
// JSON-line writes, so output streams even while user code loops. It reads `input()` answers
// from its fd 0 with blocking reads. Both fds are left to us: nothing here touches
// process.stdout/stdin (which would switch them to non-blocking mode).

const { EventEmitter } = require('events');
const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const { createRequire } = require('module');

const WORK_DIR = process.env.SORNA_WORK_DIR || process.cwd();
const INTERRUPT_LINE = '\u0000interrupt';

function send(obj) {
  const data = Buffer.from(JSON.stringify(obj) + '\n', 'utf8');
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(1, data, off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

const emit = (op, d) => send({ o: op, d });

// Stand-ins for process.stdout/stderr (Console wants an EventEmitter with write()).
function userStream(op) {
  const s = new EventEmitter();
  s.write = (chunk, encoding, cb) => {
    emit(op, typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
  s.isTTY = false;
  s.columns = 80;
  return s;
}
const out = userStream('stdout');
const err = userStream('stderr');

class InterruptError extends Error {}

// Blocking line read from fd 0 (the daemon writes one line per `input` op).
let inputBuf = Buffer.alloc(0);
function readLine() {
  for (;;) {
    const nl = inputBuf.indexOf(10);
    if (nl >= 0) {
      const line = inputBuf.subarray(0, nl).toString('utf8');
      inputBuf = inputBuf.subarray(nl + 1);
      return line;
    }
    const chunk = Buffer.alloc(65536);
    let n;
    try {
      n = fs.readSync(0, chunk, 0, chunk.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        continue;
      }
      throw e;
    }
    if (n === 0) throw new Error('input closed');
    inputBuf = Buffer.concat([inputBuf, chunk.subarray(0, n)]);
  }
}

function input(promptText = '', isPassword = false) {
  if (promptText) emit('stdout', String(promptText));
  emit('waiting-input', { is_password: Boolean(isPassword) });
  const line = readLine();
  if (line === INTERRUPT_LINE) throw new InterruptError('Interrupted while waiting for input');
  return line;
}

// Timers made by user code are tracked so a run ends only when its callbacks have run.
const pendingTimers = new Set();
let timersChanged = () => {};
function trackedTimeout(fn, ms, ...args) {
  const h = setTimeout(() => {
    pendingTimers.delete(h);
    try {
      fn(...args);
    } finally {
      timersChanged();
    }
  }, ms);
  pendingTimers.add(h);
  return h;
}
function trackedClearTimeout(h) {
  pendingTimers.delete(h);
  clearTimeout(h);
  timersChanged();
}

const userConsole = new console.Console({ stdout: out, stderr: err, colorMode: false });
const userProcess = Object.create(process, {
  stdout: { value: out },
  stderr: { value: err },
  exit: {
    value: (code) => {
      throw new Error(`process.exit(${code === undefined ? '' : code}) is not allowed in a kernel`);
    },
  },
});

const sandbox = {
  console: userConsole,
  process: userProcess,
  require: createRequire(path.join(WORK_DIR, '<input>')),
  module: { exports: {} },
  __dirname: WORK_DIR,
  __filename: path.join(WORK_DIR, '<input>'),
  input,
  prompt: (text) => input(text),
  setTimeout: trackedTimeout,
  clearTimeout: trackedClearTimeout,
  setInterval,
  clearInterval,
  setImmediate,
  clearImmediate,
  queueMicrotask,
  structuredClone,
  Buffer,
  URL,
  URLSearchParams,
  TextEncoder,
  TextDecoder,
  AbortController,
  atob,
  btoa,
  performance: require('perf_hooks').performance,
};
sandbox.exports = sandbox.module.exports;
sandbox.global = sandbox;
sandbox.globalThis = sandbox;
const context = vm.createContext(sandbox, { name: 'sorna' });

function isErrorLike(e) {
  return e !== null && typeof e === 'object' && typeof e.stack === 'string';
}

// The error as Node prints it, without the daemon's own frames.
function formatError(e) {
  if (e instanceof InterruptError) return 'Interrupted\n';
  if (!isErrorLike(e)) return `Uncaught ${util.inspect(e)}\n`;
  let lines = e.stack.split('\n');
  // Node's source-line header ("file:line / code / ^^^ / blank") is kept only for <input>.
  const blank = lines.indexOf('');
  if (blank > 0 && blank < 5 && /:\d+$/.test(lines[0]) && !lines[0].startsWith('<input>')) {
    lines = lines.slice(blank + 1);
  }
  const kept = [];
  let inFrames = false;
  for (const line of lines) {
    const isFrame = /^\s+at /.test(line);
    inFrames = inFrames || isFrame;
    if (!inFrames) kept.push(line);
    else if (isFrame && line.includes('<input>')) kept.push(line);
  }
  return kept.join('\n') + '\n';
}

// Interrupts: SIGINT from the daemon. During synchronous code, breakOnSigint throws;
// while waiting on promises or timers, this handler ends the wait.
let onInterrupt = null;
process.on('SIGINT', () => {
  if (onInterrupt) onInterrupt();
});
process.on('uncaughtException', (e) => emit('stderr', formatError(e)));
process.on('unhandledRejection', (e) => emit('stderr', formatError(e)));

function compile(code) {
  try {
    return new vm.Script(code, { filename: '<input>' });
  } catch (e) {
    // Top-level await: run the snippet as an async function body (its declarations stay local).
    if (e instanceof SyntaxError && /await/.test(e.message)) {
      try {
        return new vm.Script(`(async () => {\n${code}\n})()`, { filename: '<input>', lineOffset: -1 });
      } catch (e2) {
        // report the original error
      }
    }
    throw e;
  }
}

async function runCode(code) {
  const interrupted = new Promise((resolve) => {
    onInterrupt = () => resolve('interrupted');
  });
  try {
    const script = compile(code);
    const result = script.runInContext(context, { breakOnSigint: true });
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      const r = await Promise.race([Promise.resolve(result).then(() => 'done'), interrupted]);
      if (r === 'interrupted') throw new InterruptError();
    }
    while (pendingTimers.size) {
      const changed = new Promise((resolve) => {
        timersChanged = resolve;
      });
      if ((await Promise.race([changed, interrupted])) === 'interrupted') {
        for (const h of pendingTimers) clearTimeout(h);
        pendingTimers.clear();
        throw new InterruptError();
      }
    }
  } catch (e) {
    // Like a Node script dying of an uncaught error: its timers never fire.
    for (const h of pendingTimers) clearTimeout(h);
    pendingTimers.clear();
    if (isErrorLike(e) && /Script execution (was )?interrupted/.test(e.message)) {
      emit('stderr', 'Interrupted\n');
    } else {
      emit('stderr', formatError(e));
    }
  } finally {
    onInterrupt = null;
    timersChanged = () => {};
  }
}

const KEYWORDS = ('await break case catch class const continue debugger default delete do else ' +
  'export extends false finally for function if import in instanceof let new null return ' +
  'super switch this throw true try typeof undefined var void while with yield').split(' ');

function propertyNames(obj) {
  const names = new Set();
  for (let o = obj; o !== null && o !== undefined; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) names.add(n);
  }
  return [...names];
}

// Candidates for the identifier path at the end of `code` (no user code is evaluated).
function complete(code) {
  const m = /([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\.?$/.exec(code);
  if (!m) return [];
  const text = code.slice(m.index);
  const dot = text.lastIndexOf('.');
  let base = vm.runInContext('globalThis', context);
  let prefix = text;
  let head = '';
  if (dot >= 0) {
    head = text.slice(0, dot + 1);
    prefix = text.slice(dot + 1);
    for (const key of text.slice(0, dot).split('.')) {
      try {
        base = base[key];
      } catch (e) {
        return [];
      }
      if (base === null || base === undefined) return [];
    }
  }
  const names = propertyNames(Object(base));
  if (dot < 0) names.push(...KEYWORDS);
  return [...new Set(names)]
    .filter((n) => n.startsWith(prefix) && /^[A-Za-z_$][\w$]*$/.test(n))
    .sort()
    .map((n) => head + n);
}

process.on('message', async (msg) => {
  if (msg.t === 'run') {
    await runCode(msg.code);
    send({ o: 'done', id: msg.id });
  } else if (msg.t === 'complete') {
    let items = [];
    try {
      items = complete(msg.code);
    } catch (e) {
      items = [];
    }
    send({ o: 'completion', id: msg.id, d: items });
  }
});
send({ o: 'ready' });
