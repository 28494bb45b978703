// The Sorna demo console: run code through the real API and render the result.
import { renderResult } from "./sorna-media/index.js";

const API_VERSION = "v2.20170315";
const enc = new TextEncoder();
const $ = (id) => document.getElementById(id);

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function hmac(key, data) {
  const k = await crypto.subtle.importKey(
    "raw", typeof key === "string" ? enc.encode(key) : key,
    { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  return crypto.subtle.sign("HMAC", k, enc.encode(data));
}

/** Headers of a signed request (API.md "Authentication"), dated with X-Sorna-Date. */
export async function signedHeaders({ method, url, body, accessKey, secretKey, now = new Date() }) {
  const u = new URL(url, location.href);
  const date = now.toISOString().replace(/\.\d{3}Z$/, "+00:00");
  const day = date.slice(0, 10).replaceAll("-", "");
  const contentType = "application/json";
  const bodyHash = hex(await crypto.subtle.digest("SHA-256", enc.encode(body ?? "")));
  const toSign = [
    method, u.pathname + u.search, date, "host:" + u.host, "content-type:" + contentType,
    "x-sorna-version:" + API_VERSION, bodyHash,
  ].join("\n");
  const signKey = await hmac(await hmac(secretKey, day), u.host);
  const signature = hex(await hmac(signKey, toSign));
  return {
    "Content-Type": contentType,
    "X-Sorna-Date": date,
    "X-Sorna-Version": API_VERSION,
    Authorization: `Sorna signMethod=HMAC-SHA256, credential=${accessKey}:${signature}`,
  };
}

function settings() {
  return {
    endpoint: $("endpoint").value.trim().replace(/\/$/, "") || location.origin,
    accessKey: $("access-key").value.trim(),
    secretKey: $("secret-key").value.trim(),
  };
}

async function call(method, path, payload) {
  const { endpoint, accessKey, secretKey } = settings();
  const url = endpoint + path;
  const body = payload === undefined ? "" : JSON.stringify(payload);
  const headers = await signedHeaders({ method, url, body, accessKey, secretKey });
  const resp = await fetch(url, { method, headers, body: body || undefined });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : {};
  if (!resp.ok) throw new Error(`${resp.status} ${data.title ?? resp.statusText}`);
  return data;
}

const kernels = new Map(); // lang -> kernel id
const sessionToken = "console-" + Math.random().toString(36).slice(2, 10);

async function kernelFor(lang) {
  if (!kernels.has(lang)) {
    const made = await call("POST", "/v2/kernel/create", { lang, clientSessionToken: sessionToken });
    kernels.set(lang, made.kernelId);
  }
  return kernels.get(lang);
}

async function run(event) {
  event?.preventDefault();
  const out = $("output");
  const status = $("status");
  $("run").disabled = true;
  status.textContent = "running...";
  try {
    const lang = $("lang").value;
    const kernelId = await kernelFor(lang);
    let body = { mode: "query", code: $("code").value };
    for (;;) {
      const { result } = await call("POST", `/v2/kernel/${kernelId}`, body);
      renderResult(result, out);
      if (result.status === "continued") {
        body = { mode: "continue", code: "", runId: result.runId };
      } else if (result.status === "waiting-input") {
        const line = prompt(result.options?.is_password ? "Password" : "Input") ?? "";
        body = { mode: "input", code: line, runId: result.runId };
      } else {
        status.textContent = result.status;
        break;
      }
    }
  } catch (e) {
    const p = document.createElement("p");
    p.className = "sorna-error";
    p.textContent = String(e.message ?? e);
    out.append(p);
    status.textContent = "error";
  } finally {
    $("run").disabled = false;
  }
}

function init() {
  for (const id of ["endpoint", "access-key", "secret-key"]) {
    const input = $(id);
    input.value = localStorage.getItem(`sorna.${id}`) ?? "";
    input.addEventListener("change", () => localStorage.setItem(`sorna.${id}`, input.value));
  }
  if (!$("access-key").value) $("settings").open = true;
  $("run-form").addEventListener("submit", run);
  $("clear").addEventListener("click", () => ($("output").textContent = ""));
  $("code").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(e);
  });
}

if (typeof document !== "undefined") init();
