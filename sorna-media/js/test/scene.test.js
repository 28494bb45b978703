import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { decode, fromBase64 } from "../src/msgpack.js";
import { Scene, Timeline, parseColor, cssColor, interpolate } from "../src/scene.js";

const fixture = JSON.parse(readFileSync(new URL("./fixtures/drawing.json", import.meta.url)));

test("a drawing record made by sorna.drawing decodes to its commands", () => {
  assert.deepEqual(decode(fromBase64(fixture.data)), fixture.commands);
});

test("the scene built from the fixture: shapes, groups, fills, updates", () => {
  const scene = new Scene(7);
  const tl = new Timeline(scene);
  tl.push(fixture.commands);
  tl.finish();
  assert.equal(scene.width, 120);
  assert.equal(scene.height, 80);
  const group = scene.objects.get(1);
  assert.deepEqual(group.props, { x: 50, y: 0, angle: -90.25 });
  const rect = scene.objects.get(2);
  assert.equal(rect.kind, "rect");
  assert.equal(rect.group, 1);
  assert.deepEqual(rect.props, {
    x: 10, y: 10, width: 20, height: 20,
    stroke: "#000000ff", fill: "#ff0000ff", angle: 12.5, line_width: 1,
  });
  const fill = scene.objects.get(3);
  assert.equal(fill.kind, "fill");
  assert.deepEqual(fill.members, [4, 5]);
  assert.equal(fill.group, null);
  const text = [...scene.objects.values()].find((o) => o.kind === "text");
  assert.equal(text.props.text, "héllo ✓");
  const circle = [...scene.objects.values()].find((o) => o.kind === "circle");
  assert.equal(circle.props.radius, 70000);
});

function scene1() {
  const scene = new Scene(1);
  scene.apply([1, "canvas", 100, 100, "#ffffffff", "#000000ff"]);
  scene.apply([1, "obj", 1, ["circle", 0, 0, 5, "#000000ff", "#ff0000ff", 0, 1]]);
  return scene;
}

test("updates are tweened over the duration; one object's props move together", () => {
  const scene = scene1();
  const tl = new Timeline(scene, { durationMs: 100 });
  tl.push([[1, "update", 1, "x", 100], [1, "update", 1, "y", 50], [1, "update", 1, "x", 0]]);
  tl.advance(1000);
  assert.deepEqual([scene.get(1, "x"), scene.get(1, "y")], [0, 0]);
  tl.advance(1050);
  assert.deepEqual([scene.get(1, "x"), scene.get(1, "y")], [50, 25]);
  tl.advance(1100);
  assert.deepEqual([scene.get(1, "x"), scene.get(1, "y")], [100, 50]);
  assert.ok(tl.busy);
  tl.advance(1150);
  assert.equal(scene.get(1, "x"), 50);
  tl.advance(5000);
  assert.equal(scene.get(1, "x"), 0);
  assert.ok(!tl.busy);
});

test("stop-anim applies updates at once until resume-anim", () => {
  const scene = scene1();
  const tl = new Timeline(scene, { durationMs: 100 });
  tl.push([[1, "stop-anim"], [1, "update", 1, "x", 40], [1, "resume-anim"], [1, "update", 1, "x", 80]]);
  tl.advance(0);
  assert.equal(scene.get(1, "x"), 40);
  tl.advance(50);
  assert.equal(scene.get(1, "x"), 60);
});

test("colours parse, print and interpolate", () => {
  assert.deepEqual(parseColor("#ff000080"), [255, 0, 0, 128]);
  assert.deepEqual(parseColor("#00ff00"), [0, 255, 0, 255]);
  assert.equal(parseColor("red"), null);
  assert.equal(cssColor("#0000ffff"), "rgba(0, 0, 255, 1)");
  assert.equal(cssColor(null), "transparent");
  assert.equal(interpolate("#000000ff", "#ffffff00", 0.5), "#80808080");
  assert.deepEqual(interpolate([[0, 0]], [[10, 20]], 0.5), [[5, 10]]);
  assert.equal(interpolate("a", "b", 0.5), "a");
  assert.equal(interpolate("a", "b", 1), "b");
});
