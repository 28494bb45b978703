// The state of one Sorna canvas, built from drawing commands (PROTOCOLS.md section 6), and the
// timeline that plays them: shapes appear at once, property updates are tweened. Pure logic,
// no DOM: painting is in paint.js.

/** Positional arguments of each shape in an "obj" command (sorna.drawing.SHAPE_PROPS). */
export const SHAPE_PROPS = {
  line: ["x0", "y0", "x1", "y1", "stroke", "line_width"],
  circle: ["x", "y", "radius", "stroke", "fill", "angle", "line_width"],
  rect: ["x", "y", "width", "height", "stroke", "fill", "angle", "line_width"],
  triangle: ["x", "y", "width", "height", "stroke", "fill", "angle", "line_width"],
  polygon: ["x", "y", "points", "stroke", "fill", "angle", "line_width"],
  text: ["x", "y", "text", "color", "size", "angle"],
};

/** Parse "#rrggbbaa" (or "#rrggbb") into [r, g, b, a] with a in 0..255; null if not a colour. */
export function parseColor(value) {
  if (typeof value !== "string") return null;
  const m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/i.exec(value);
  if (!m) return null;
  const n = parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255, m[2] ? parseInt(m[2], 16) : 255];
}

/** A CSS colour for canvas drawing, from "#rrggbbaa" or [r, g, b, a]. */
export function cssColor(value) {
  const c = Array.isArray(value) ? value : parseColor(value);
  if (!c) return "transparent";
  return `rgba(${Math.round(c[0])}, ${Math.round(c[1])}, ${Math.round(c[2])}, ${c[3] / 255})`;
}

function hex2(v) {
  return Math.max(0, Math.min(255, Math.round(v))).toString(16).padStart(2, "0");
}

/** Interpolate a property value from `a` to `b` at t in [0, 1]. */
export function interpolate(a, b, t) {
  if (t >= 1) return b;
  if (typeof a === "number" && typeof b === "number") return a + (b - a) * t;
  const ca = parseColor(a);
  const cb = parseColor(b);
  if (ca && cb) return "#" + ca.map((v, i) => hex2(v + (cb[i] - v) * t)).join("");
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    return a.map((p, i) => [interpolate(p[0], b[i][0], t), interpolate(p[1], b[i][1], t)]);
  }
  return a;
}

/** One canvas: its size, colours and objects (shapes, groups, fills) in drawing order. */
export class Scene {
  constructor(id) {
    this.id = id;
    this.width = 0;
    this.height = 0;
    this.bgcolor = "#ffffffff";
    this.fgcolor = "#000000ff";
    this.objects = new Map(); // id -> {id, kind, props, group, fill, members?}
    this.order = [];
    this.groupStack = [];
    this.fillStack = [];
    this.animate = true;
  }

  add(id, kind, props) {
    const obj = {
      id,
      kind,
      props,
      group: this.groupStack.at(-1) ?? null,
      members: kind === "fill" ? [] : undefined,
    };
    this.objects.set(id, obj);
    this.order.push(id);
    const fill = this.fillStack.at(-1);
    if (kind === "line" && fill !== undefined) this.objects.get(fill).members.push(id);
    return obj;
  }

  /** Apply one command except "update" (see Timeline); unknown commands are ignored. */
  apply(cmd) {
    const [, op, ...args] = cmd;
    switch (op) {
      case "canvas":
        [this.width, this.height, this.bgcolor, this.fgcolor] = args;
        break;
      case "bgcolor":
        this.bgcolor = args[0];
        break;
      case "fgcolor":
        this.fgcolor = args[0];
        break;
      case "obj": {
        const [id, [kind, ...values]] = args;
        const names = SHAPE_PROPS[kind] ?? [];
        const props = {};
        names.forEach((name, i) => (props[name] = values[i]));
        this.add(id, kind, props);
        break;
      }
      case "begin-group":
        this.add(args[0], "group", { x: 0, y: 0, angle: 0 });
        this.groupStack.push(args[0]);
        break;
      case "end-group":
        this.groupStack.pop();
        break;
      case "begin-fill":
        this.add(args[0], "fill", { color: args[1] });
        this.fillStack.push(args[0]);
        break;
      case "end-fill":
        this.fillStack.pop();
        break;
      case "stop-anim":
        this.animate = false;
        break;
      case "resume-anim":
        this.animate = true;
        break;
      case "update":
        this.set(args[0], args[1], args[2]);
        break;
      default:
        break;
    }
  }

  set(id, prop, value) {
    const obj = this.objects.get(id);
    if (obj) obj.props[prop] = value;
  }

  get(id, prop) {
    return this.objects.get(id)?.props[prop];
  }
}

/**
 * Plays commands on a Scene over time. Consecutive updates of one object (while animation is
 * on) form one step tweened over `durationMs`; everything else applies at once.
 */
export class Timeline {
  constructor(scene, { durationMs = 250 } = {}) {
    this.scene = scene;
    this.durationMs = durationMs;
    this.queue = [];
    this.tween = null; // {id, changes: [{prop, from, to}], start}
  }

  push(commands) {
    this.queue.push(...commands);
  }

  /** True while commands are queued or a tween runs. */
  get busy() {
    return this.tween !== null || this.queue.length > 0;
  }

  /** Advance to time `now` (ms); return true if the scene changed. */
  advance(now) {
    let changed = false;
    for (;;) {
      if (this.tween) {
        const t = this.durationMs > 0 ? (now - this.tween.start) / this.durationMs : 1;
        const done = !Number.isFinite(now) || t >= 1;
        for (const c of this.tween.changes) {
          this.scene.set(this.tween.id, c.prop, interpolate(c.from, c.to, done ? 1 : t));
        }
        changed = true;
        if (!done) return changed;
        const end = this.tween.start + this.durationMs;
        this.tween = null;
        now = Math.max(now, end);
        if (!this.queue.length) return changed;
        // The next step starts where this one ended, so steps keep their pace.
        this.startAt = end;
      }
      if (!this.queue.length) return changed;
      const cmd = this.queue.shift();
      changed = true;
      if (cmd[1] !== "update" || !this.scene.animate) {
        this.scene.apply(cmd);
        continue;
      }
      const id = cmd[2];
      const changes = [{ prop: cmd[3], from: this.scene.get(id, cmd[3]), to: cmd[4] }];
      while (
        this.queue.length &&
        this.queue[0][1] === "update" &&
        this.queue[0][2] === id &&
        !changes.some((c) => c.prop === this.queue[0][3])
      ) {
        const next = this.queue.shift();
        changes.push({ prop: next[3], from: this.scene.get(id, next[3]), to: next[4] });
      }
      const start = this.startAt ?? now;
      this.startAt = undefined;
      this.tween = { id, changes, start: Math.min(start, now) };
    }
  }

  /** Apply everything at once (no animation). */
  finish() {
    this.advance(Number.POSITIVE_INFINITY);
  }
}
