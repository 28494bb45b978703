import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { decode, fromBase64, MsgpackError } from "../src/msgpack.js";

const vectors = JSON.parse(readFileSync(new URL("./fixtures/msgpack.json", import.meta.url)));

for (const [name, { b64, value }] of Object.entries(vectors)) {
  test(`decodes what Python's msgpack packed: ${name}`, () => {
    let got = decode(fromBase64(b64));
    if (got instanceof Uint8Array) got = Array.from(got);
    if (typeof got === "bigint") got = got.toString();
    if (got && got.data instanceof Uint8Array) got = { type: got.type, data: Array.from(got.data) };
    assert.deepEqual(got, value);
  });
}

test("str32, array32 and map32 headers", () => {
  const s = "x".repeat(70000);
  const bytes = new Uint8Array(5 + s.length);
  bytes.set([0xdb, 0, 1, 0x11, 0x70]);
  bytes.fill(0x78, 5);
  assert.equal(decode(bytes), s);
  assert.deepEqual(decode(Uint8Array.of(0xdd, 0, 0, 0, 2, 1, 0xc0)), [1, null]);
  assert.deepEqual(decode(Uint8Array.of(0xdf, 0, 0, 0, 1, 0xa1, 0x6b, 0x07)), { k: 7 });
  assert.equal(decode(Uint8Array.of(0xd0, 0x80)), -128);
});

test("truncated, invalid and trailing bytes are errors", () => {
  assert.throws(() => decode(Uint8Array.of(0x92, 0x01)), MsgpackError);
  assert.throws(() => decode(Uint8Array.of(0xc1)), /invalid msgpack byte 0xc1/);
  assert.throws(() => decode(Uint8Array.of(0x01, 0x02)), /1 bytes after/);
  assert.throws(() => decode(Uint8Array.of(0xcd, 0x01)), /truncated/);
});
