// Builds the comparator bundle into src/unlearnkit/ui/static/ (index.html, app.js, app.css).
// Deterministic: fixed target, minified, no sourcemap, no legal comments, no timestamps, so
// `make ui-check` can rebuild and diff the committed bundle.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "unlearnkit", "ui", "static");
mkdirSync(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  charset: "utf8",
  logLevel: "warning",
};

await build({ ...common, entryPoints: [join(here, "src", "main.ts")], outfile: join(out, "app.js"), format: "iife", platform: "browser" });
await build({ ...common, entryPoints: [join(here, "src", "app.css")], outfile: join(out, "app.css") });
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));

// a trailing newline, so the committed files are plain text files
for (const f of ["app.js", "app.css"]) {
  const p = join(out, f);
  const text = readFileSync(p, "utf8");
  if (!text.endsWith("\n")) writeFileSync(p, `${text}\n`);
}
for (const f of ["index.html", "app.js", "app.css"]) console.log(`${f.padEnd(10)} ${statSync(join(out, f)).size} bytes`);
