// Paint a Scene on a 2D canvas context.

import { cssColor } from "./scene.js";

const RAD = Math.PI / 180;

function applyGroups(ctx, scene, groupId) {
  const chain = [];
  for (let g = groupId; g !== null && g !== undefined; g = scene.objects.get(g)?.group) {
    chain.unshift(scene.objects.get(g));
  }
  for (const group of chain) {
    ctx.translate(group.props.x ?? 0, group.props.y ?? 0);
    ctx.rotate((group.props.angle ?? 0) * RAD);
  }
}

function strokeAndFill(ctx, p) {
  if (p.fill) {
    ctx.fillStyle = cssColor(p.fill);
    ctx.fill();
  }
  if (p.stroke) {
    ctx.lineWidth = p.line_width ?? 1;
    ctx.strokeStyle = cssColor(p.stroke);
    ctx.stroke();
  }
}

function turnAbout(ctx, cx, cy, angle) {
  ctx.translate(cx, cy);
  ctx.rotate((angle ?? 0) * RAD);
}

const SHAPES = {
  line(ctx, p) {
    ctx.beginPath();
    ctx.moveTo(p.x0, p.y0);
    ctx.lineTo(p.x1, p.y1);
    strokeAndFill(ctx, { stroke: p.stroke, line_width: p.line_width });
  },
  circle(ctx, p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, Math.max(0, p.radius), 0, 2 * Math.PI);
    strokeAndFill(ctx, p);
  },
  rect(ctx, p) {
    turnAbout(ctx, p.x + p.width / 2, p.y + p.height / 2, p.angle);
    ctx.beginPath();
    ctx.rect(-p.width / 2, -p.height / 2, p.width, p.height);
    strokeAndFill(ctx, p);
  },
  triangle(ctx, p) {
    turnAbout(ctx, p.x + p.width / 2, p.y + p.height / 2, p.angle);
    ctx.beginPath();
    ctx.moveTo(0, -p.height / 2);
    ctx.lineTo(p.width / 2, p.height / 2);
    ctx.lineTo(-p.width / 2, p.height / 2);
    ctx.closePath();
    strokeAndFill(ctx, p);
  },
  polygon(ctx, p) {
    turnAbout(ctx, p.x, p.y, p.angle);
    ctx.beginPath();
    (p.points ?? []).forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    strokeAndFill(ctx, p);
  },
  text(ctx, p) {
    turnAbout(ctx, p.x, p.y, p.angle);
    ctx.font = `${p.size ?? 16}px sans-serif`;
    ctx.fillStyle = cssColor(p.color);
    ctx.fillText(String(p.text ?? ""), 0, 0);
  },
  fill(ctx, p, scene, obj) {
    const lines = obj.members.map((id) => scene.objects.get(id)?.props).filter(Boolean);
    if (!lines.length) return;
    ctx.beginPath();
    ctx.moveTo(lines[0].x0, lines[0].y0);
    for (const line of lines) ctx.lineTo(line.x1, line.y1);
    ctx.closePath();
    ctx.fillStyle = cssColor(p.color);
    ctx.fill();
  },
  group() {},
};

/** Clear `ctx` to the scene's background and draw every object in creation order. */
export function paint(ctx, scene) {
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.fillStyle = cssColor(scene.bgcolor);
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.restore();
  for (const id of scene.order) {
    const obj = scene.objects.get(id);
    const draw = SHAPES[obj.kind];
    if (!draw) continue;
    ctx.save();
    applyGroups(ctx, scene, obj.group);
    draw(ctx, obj.props, scene, obj);
    ctx.restore();
  }
}
