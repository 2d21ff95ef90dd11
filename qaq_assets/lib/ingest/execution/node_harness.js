// Runs inside the sandbox: an answer's JavaScript (solution.js), then its test units (units.json)
// one by one, each with its own timeout, in one realm: the answer's top-level functions, classes
// and constants are visible to the units. One line per unit: `<marker> {"unit", "ok", "detail"}`.
"use strict";
const fs = require("fs");
const vm = require("vm");
const marker = process.argv[2];
const unitMs = 1000 * Number(process.argv[3]);
const out = (unit, ok, detail, where) =>
  fs.writeSync(
    1, marker + " " + JSON.stringify({ unit, ok, detail: String(detail || "").slice(0, 300), ...where }) + "\n");
globalThis.require = require;
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
globalThis.assert = require("assert");
const silent = { log() {}, info() {}, warn() {}, error() {}, debug() {} };
const realConsole = globalThis.console;
const units = JSON.parse(fs.readFileSync("units.json", "utf8"));
let source = fs.readFileSync("solution.js", "utf8");
// ES module syntax in a script: `export function f` is `function f` here.
source = source.replace(/^(\s*)export\s+default\s+(?=(async\s+)?(function|class)\b)/gm, "$1")
               .replace(/^(\s*)export\s+(?=(async\s+)?(function|class|const|let|var)\b)/gm, "$1");
globalThis.console = silent;
try {
  vm.runInThisContext(source, { filename: "solution.js", timeout: unitMs });
  out(-1, true);
} catch (error) {
  // Where the answer's own code raised: the error's type and the innermost line of solution.js.
  const at = /solution\.js:(\d+)/.exec((error && error.stack) || "");
  const line = at ? (source.split("\n")[Number(at[1]) - 1] || "").trim().slice(0, 200) : "";
  const name = error && error.name ? error.name : "thrown value";
  out(-1, false, "the answer's code raised " + (error && error.name ? error.name + ": " + error.message : error),
      { error: name, line });
  process.exit(0);
}
units.forEach((unit, index) => {
  try {
    const value = vm.runInThisContext(unit.source, { filename: "test.js", timeout: unitMs });
    // A call's report is what it returned (JSON where it has one: undefined and functions do not).
    let shown = unit.kind === "call" ? (JSON.stringify(value) ?? String(value)) : "";
    if (shown.length > 200) shown = "sha256:" + require("crypto").createHash("sha256").update(shown).digest("hex");
    out(index, true, shown);
  } catch (error) {
    out(index, false, error && error.message ? error.message.split("\n")[0] : String(error));
  }
});
globalThis.console = realConsole;
