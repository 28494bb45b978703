// sorna-media: render Sorna execution results in the browser.
export { renderResult, DRAWING_MIME } from "./render.js";
export { decode, fromBase64, MsgpackError } from "./msgpack.js";
export { Scene, Timeline, SHAPE_PROPS, parseColor, cssColor, interpolate } from "./scene.js";
export { paint } from "./paint.js";
