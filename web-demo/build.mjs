// Builds the web app into one directory that the nodo binary embeds (build.rs
// runs this) or serves from disk (`[server] web_dir`, for working on the page).
//
//   node build.mjs [--out DIR] [--watch] [--dev]
//
// Output: index.html, sw.js, app-<hash>.js, app-<hash>.css, plus a .gz copy of
// every text file (the node serves it to clients that accept gzip). Nothing is
// loaded from the internet: no CDN, no web fonts.
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const outAt = args.indexOf('--out');
const out = resolve(outAt >= 0 ? args[outAt + 1] : join(here, 'dist'));
const dev = flag('--dev') || flag('--watch');

const options = {
  entryPoints: { app: join(here, 'src/main.jsx') },
  bundle: true,
  format: 'esm',
  target: ['chrome105', 'firefox110', 'safari15.4'],
  minify: !dev,
  sourcemap: dev ? 'inline' : false,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  splitting: true, // livekit-client loads only when a call or meeting starts
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  loader: { '.svg': 'text', '.wav': 'file' },
  outdir: join(out, 'assets'),
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': JSON.stringify(dev ? 'development' : 'production') },
  plugins: [{ name: 'nodo-page', setup: (b) => b.onEnd((r) => r.errors.length || page(r.metafile)) }],
};

/** Writes index.html naming the hashed bundle, copies sw.js, gzips text files. */
function page(meta) {
  const url = (p) => '/assets/' + p.split('/').pop();
  const files = Object.keys(meta.outputs).map(url);
  const entry = Object.entries(meta.outputs).find(([, o]) => o.entryPoint);
  const js = url(entry[0]);
  const css = entry[1].cssBundle ? url(entry[1].cssBundle) : undefined;
  const html = readFileSync(join(here, 'index.html'), 'utf8')
    .replace('%APP_CSS%', css ? `<link rel="stylesheet" href="${css}">` : '')
    .replace('%APP_JS%', `<script type="module" src="${js}"></script>`);
  writeFileSync(join(out, 'index.html'), html);
  writeFileSync(join(out, 'sw.js'), readFileSync(join(here, 'sw.js')));
  writeFileSync(join(out, 'favicon.svg'), readFileSync(join(here, 'favicon.svg')));
  for (const f of walk(out)) {
    if (/\.(js|css|html|svg|json)$/.test(f)) writeFileSync(f + '.gz', gzipSync(readFileSync(f), { level: 9 }));
  }
  const bytes = (f) => readFileSync(join(out, f)).length;
  const gz = (f) => readFileSync(join(out, f + '.gz')).length;
  const report = files.map((f) => `${f} ${bytes(f)} B (${gz(f)} B gzip)`).join(', ');
  console.error(`web-demo: built ${out}: ${report}`);
  writeFileSync(join(out, 'build.json'), JSON.stringify({ hash: createHash('sha256').update(html).digest('hex').slice(0, 16), files }, null, 1));
}

function* walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (!p.endsWith('.gz')) yield p;
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
if (flag('--watch')) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.error(`web-demo: watching, output in ${out}`);
} else {
  await esbuild.build(options);
}
