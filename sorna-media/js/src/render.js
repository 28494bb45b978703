// renderResult(result, element): a Sorna execution result into the DOM.

import { decode, fromBase64 } from "./msgpack.js";
import { paint } from "./paint.js";
import { Scene, Timeline } from "./scene.js";

export const DRAWING_MIME = "application/x-sorna-drawing";

const views = new WeakMap(); // element -> Map(canvas id -> DrawingView)

function now() {
  return globalThis.performance?.now() ?? Date.now();
}

/** One drawing canvas in the page: its scene, its timeline and the animation loop. */
class DrawingView {
  constructor(id, options) {
    this.scene = new Scene(id);
    this.timeline = new Timeline(this.scene, { durationMs: options.animationMs ?? 250 });
    this.canvas = document.createElement("canvas");
    this.canvas.className = "sorna-drawing";
    this.canvas.dataset.canvasId = String(id);
    this.frame = null;
  }

  push(commands) {
    this.timeline.push(commands);
    this.tick();
  }

  tick() {
    if (this.frame !== null) return;
    this.timeline.advance(now());
    this.draw();
    if (this.timeline.busy) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.tick();
      });
    } else {
      this.canvas.dataset.idle = "true";
    }
  }

  draw() {
    const { scene, canvas } = this;
    if (canvas.width !== scene.width || canvas.height !== scene.height) {
      canvas.width = scene.width;
      canvas.height = scene.height;
    }
    canvas.dataset.idle = "false";
    paint(canvas.getContext("2d"), scene);
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function placeholder(label) {
  const node = element("div", "sorna-unknown", `[${label}]`);
  node.setAttribute("role", "note");
  return node;
}

function renderDrawing(data, target, options) {
  let commands;
  try {
    commands = decode(fromBase64(data));
  } catch (e) {
    return placeholder(`unreadable drawing: ${e.message}`);
  }
  let canvases = views.get(target);
  if (!canvases) views.set(target, (canvases = new Map()));
  const byCanvas = new Map();
  for (const cmd of Array.isArray(commands) ? commands : []) {
    if (!Array.isArray(cmd)) continue;
    if (!byCanvas.has(cmd[0])) byCanvas.set(cmd[0], []);
    byCanvas.get(cmd[0]).push(cmd);
  }
  const created = [];
  for (const [id, cmds] of byCanvas) {
    let view = canvases.get(id);
    if (!view) {
      view = new DrawingView(id, options);
      canvases.set(id, view);
      created.push(view.canvas);
    }
    view.push(cmds);
  }
  if (!created.length) return null;
  if (created.length === 1) return created[0];
  const box = element("div", "sorna-drawings");
  box.append(...created);
  return box;
}

function renderMedia(mime, data, target, options) {
  if (mime === DRAWING_MIME) return renderDrawing(data, target, options);
  if (mime === "image/svg+xml") {
    const img = element("img", "sorna-image");
    img.alt = "SVG image";
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(data);
    return img;
  }
  if (mime === "image/png" || mime === "image/jpeg" || mime === "image/gif") {
    const img = element("img", "sorna-image");
    img.alt = `${mime} image`;
    img.src = `data:${mime};base64,${data}`;
    return img;
  }
  return placeholder(`unsupported media: ${mime}`);
}

/** The console items of a result: an API result, {result: ...}, or the list itself. */
function consoleItems(result) {
  if (Array.isArray(result)) return result;
  if (result && Array.isArray(result.console)) return result.console;
  if (result && result.result) return consoleItems(result.result);
  return [];
}

/**
 * Render a Sorna execution result into `element` (appending; call again with the next
 * `continue` result). Items: stdout/stderr/log text, html (inserted as is: it comes from the
 * user's own kernel), media (svg/png images, drawings on a <canvas> whose later updates
 * animate), and a labelled placeholder for anything else. Options: {animationMs: 250}.
 * Returns the nodes it added.
 */
export function renderResult(result, target, options = {}) {
  const added = [];
  for (const item of consoleItems(result)) {
    const [kind, data] = Array.isArray(item) ? item : [item?.type, item?.data];
    let node = null;
    if (kind === "stdout" || kind === "stderr" || kind === "log") {
      const last = target.lastElementChild;
      if (last && last.classList.contains(`sorna-${kind}`) && last.tagName === "PRE") {
        last.textContent += String(data);
        continue;
      }
      node = element("pre", `sorna-${kind}`, String(data));
    } else if (kind === "html") {
      node = element("div", "sorna-html");
      node.innerHTML = String(data);
    } else if (kind === "media") {
      const [mime, payload] = Array.isArray(data) ? data : [data?.type, data?.data];
      node = renderMedia(String(mime), payload, target, options);
    } else {
      node = placeholder(`unknown output: ${kind}`);
    }
    if (node) {
      target.append(node);
      added.push(node);
    }
  }
  return added;
}
