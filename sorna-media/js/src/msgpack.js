// A msgpack decoder (https://github.com/msgpack/msgpack/blob/master/spec.md), enough for
// Sorna drawing commands and more: every type except the timestamp extension's meaning.
// Strings decode as UTF-8, bin as Uint8Array, maps as plain objects, ext as {type, data},
// 64-bit integers as Number when safe and BigInt otherwise.

const utf8 = new TextDecoder("utf-8");

export class MsgpackError extends Error {}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) {
      throw new MsgpackError(`truncated msgpack data at byte ${this.pos}`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }
  i8() { return this.view.getInt8(this.need(1)); }
  i16() { return this.view.getInt16(this.need(2)); }
  i32() { return this.view.getInt32(this.need(4)); }
  f32() { return this.view.getFloat32(this.need(4)); }
  f64() { return this.view.getFloat64(this.need(8)); }
  u64() { return narrow(this.view.getBigUint64(this.need(8))); }
  i64() { return narrow(this.view.getBigInt64(this.need(8))); }

  raw(n) {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }

  str(n) { return utf8.decode(this.raw(n)); }
  bin(n) { return this.raw(n).slice(); }

  array(n) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    return out;
  }

  map(n) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value();
      out[String(key)] = this.value();
    }
    return out;
  }

  ext(n) {
    const type = this.i8();
    return { type, data: this.bin(n) };
  }

  value() {
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    const read = TAGS[b];
    if (read === undefined) throw new MsgpackError(`invalid msgpack byte 0x${b.toString(16)}`);
    return read(this);
  }
}

function narrow(big) {
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big;
}

const TAGS = {
  0xc0: () => null,
  0xc2: () => false,
  0xc3: () => true,
  0xc4: (r) => r.bin(r.u8()),
  0xc5: (r) => r.bin(r.u16()),
  0xc6: (r) => r.bin(r.u32()),
  0xc7: (r) => r.ext(r.u8()),
  0xc8: (r) => r.ext(r.u16()),
  0xc9: (r) => r.ext(r.u32()),
  0xca: (r) => r.f32(),
  0xcb: (r) => r.f64(),
  0xcc: (r) => r.u8(),
  0xcd: (r) => r.u16(),
  0xce: (r) => r.u32(),
  0xcf: (r) => r.u64(),
  0xd0: (r) => r.i8(),
  0xd1: (r) => r.i16(),
  0xd2: (r) => r.i32(),
  0xd3: (r) => r.i64(),
  0xd4: (r) => r.ext(1),
  0xd5: (r) => r.ext(2),
  0xd6: (r) => r.ext(4),
  0xd7: (r) => r.ext(8),
  0xd8: (r) => r.ext(16),
  0xd9: (r) => r.str(r.u8()),
  0xda: (r) => r.str(r.u16()),
  0xdb: (r) => r.str(r.u32()),
  0xdc: (r) => r.array(r.u16()),
  0xdd: (r) => r.array(r.u32()),
  0xde: (r) => r.map(r.u16()),
  0xdf: (r) => r.map(r.u32()),
};

/** Decode one msgpack value from a Uint8Array (trailing bytes are an error). */
export function decode(bytes) {
  const reader = new Reader(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  const value = reader.value();
  if (reader.pos !== reader.bytes.length) {
    throw new MsgpackError(`${reader.bytes.length - reader.pos} bytes after the msgpack value`);
  }
  return value;
}

/** The bytes of a base64 string. */
export function fromBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
