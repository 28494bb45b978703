'use strict';
// The nodejs kernel's executor: a child of run.js that holds the user's persistent `vm`
// context. It gets work over the IPC channel and reports over its fd 1 with synchronous
// JSON-line writes, so output streams even while user code loops. It reads `input()` answers
// from its fd 0 with blocking reads. Both fds are left to us: nothing here touches
// process.stdout/stdin (which would switch them to non-blocking mode).

const { EventEmitter } = require('events');
const { Readable } = require('stream');
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
const realReadSync = fs.readSync;
const realReadFileSync = fs.readFileSync;
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
      n = realReadSync(0, chunk, 0, chunk.length, null);
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

// Standard input the standard ways. fd 0 is the daemon's line channel, so user code never
// reads it directly: `process.stdin` is a stream fed one line per `waiting-input` while a
// consumer wants data (a 'data' listener on a flowing stream, a 'readable' listener, as
// readline has), and `fs.readFileSync(0)` / `fs.readSync(0, ...)` ask for a line each (in
// query mode the end of stdin is the end of the user's line).
let stdinWanted = false;
let wakeRun = () => {};
function makeStdin() {
  const stream = new Readable({
    read() {
      if (stream !== userStdin) return;
      stdinWanted = true;
      wakeRun();
    },
  });
  stream.fd = 0;
  stream.isTTY = false;
  return stream;
}
let userStdin = makeStdin();
Object.defineProperty(process, 'stdin', { configurable: true, enumerable: true, get: () => userStdin });

function stdinDemand() {
  if (!stdinWanted || userStdin.destroyed) return false;
  const flowing = userStdin.readableFlowing === true && userStdin.listenerCount('data') > 0;
  return flowing || userStdin.listenerCount('readable') > 0;
}

function feedStdin() {
  stdinWanted = false;
  userStdin.push(input('') + '\n');
}

// Each run starts with a fresh stdin, as a new program would (a stream paused by the last
// run's readline would otherwise stay paused); one a failed or interrupted run left
// listeners on is dropped too, so that they never make the next run wait.
function freshStdin() {
  if (userStdin.listenerCount('data') || userStdin.listenerCount('readable')) return;
  userStdin = makeStdin();
  stdinWanted = false;
}

function resetStdin() {
  userStdin.removeAllListeners('data');
  userStdin.removeAllListeners('readable');
  userStdin.pause();
  freshStdin();
}

const isStdinPath = (file) => file === 0 || file === '/dev/stdin' || file === '/proc/self/fd/0';
let stdinLeft = Buffer.alloc(0);

fs.readFileSync = function readFileSync(file, options) {
  if (!isStdinPath(file)) return realReadFileSync.apply(this, arguments);
  const data = Buffer.concat([stdinLeft, Buffer.from(input('') + '\n', 'utf8')]);
  stdinLeft = Buffer.alloc(0);
  const encoding = typeof options === 'string' ? options : options && options.encoding;
  return encoding ? data.toString(encoding) : data;
};

fs.readSync = function readSync(fd, buffer, offsetOrOptions, length) {
  if (fd !== 0) return realReadSync.apply(this, arguments);
  let offset = 0;
  let size = buffer.byteLength;
  if (typeof offsetOrOptions === 'object' && offsetOrOptions !== null) {
    offset = offsetOrOptions.offset || 0;
    size = offsetOrOptions.length === undefined ? buffer.byteLength - offset : offsetOrOptions.length;
  } else if (typeof offsetOrOptions === 'number') {
    offset = offsetOrOptions;
    size = length === undefined ? buffer.byteLength - offset : length;
  }
  if (!stdinLeft.length) stdinLeft = Buffer.from(input('') + '\n', 'utf8');
  const n = stdinLeft.copy(buffer, offset, 0, Math.min(size, stdinLeft.length));
  stdinLeft = stdinLeft.subarray(n);
  return n;
};

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
  let interrupted = false;
  onInterrupt = () => {
    interrupted = true;
    wakeRun();
  };
  freshStdin();
  try {
    const script = compile(code);
    const result = script.runInContext(context, { breakOnSigint: true });
    // The run lasts while its promise is pending, its timers are, or it reads stdin.
    let settled = !(result !== null && typeof result === 'object' && typeof result.then === 'function');
    let failure = null;
    if (!settled) {
      Promise.resolve(result).then(
        () => {
          settled = true;
          wakeRun();
        },
        (e) => {
          failure = { e };
          settled = true;
          wakeRun();
        },
      );
    }
    timersChanged = () => wakeRun();
    for (;;) {
      // Let what is ready (promise callbacks, stream ticks, immediates) run first.
      await new Promise((resolve) => setImmediate(resolve));
      if (interrupted) throw new InterruptError();
      if (failure) throw failure.e;
      if (stdinDemand()) {
        feedStdin();
        continue;
      }
      if (settled && !pendingTimers.size) break;
      await new Promise((resolve) => {
        wakeRun = resolve;
        if (interrupted || stdinDemand()) resolve();
      });
      wakeRun = () => {};
    }
  } catch (e) {
    // Like a Node script dying of an uncaught error: its timers never fire.
    for (const h of pendingTimers) clearTimeout(h);
    pendingTimers.clear();
    resetStdin();
    if (isErrorLike(e) && /Script execution (was )?interrupted/.test(e.message)) {
      emit('stderr', 'Interrupted\n');
    } else {
      emit('stderr', formatError(e));
    }
  } finally {
    onInterrupt = null;
    timersChanged = () => {};
    wakeRun = () => {};
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
