// Evaluate a PAC file with an independent engine: TooTallNate's pac-resolver, which runs the
// PAC in QuickJS (WebAssembly) with its own shExpMatch and isInNet, as a proxy client would.
//
//   node evaluate.mjs [--modules DIR] [--isinnetex] PAC_FILE PAIRS_FILE
//
// PAIRS_FILE holds a JSON array of [url, host] pairs; the output (stdout) is one JSON array of
// what FindProxyForURL returned for each, in order, from one engine instance ("ERROR ..." where
// it threw). `--modules` names the folder whose node_modules holds the pinned packages
// (../pac_engine.py installs them in a cache folder outside the repository); without it they
// are looked up beside this script. `--isinnetex` gives the PAC Chromium's
// isInNetEx(address, "prefix/length"), which pac-resolver does not provide, written here with
// node's own address parser (net.BlockList).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
let modules = null;
let withIsInNetEx = false;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--modules') {
    modules = args[++i];
  } else if (args[i] === '--isinnetex') {
    withIsInNetEx = true;
  } else {
    files.push(args[i]);
  }
}
if (files.length !== 2) {
  process.stderr.write('usage: node evaluate.mjs [--modules DIR] [--isinnetex] PAC_FILE PAIRS_FILE\n');
  process.exit(2);
}

const require = createRequire(modules ? path.join(path.resolve(modules), 'package.json') : import.meta.url);
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { createPacResolver } = await load('pac-resolver');
const { QuickJS } = await load('quickjs-wasi');

// Chromium's semantics: false unless both parse and are of the same family.
function isInNetEx(address, prefix) {
  const slash = String(prefix).indexOf('/');
  if (slash < 0) return false;
  const base = prefix.slice(0, slash);
  const length = Number(prefix.slice(slash + 1));
  const family = net.isIP(base);
  if (family === 0 || net.isIP(String(address)) !== family || !Number.isInteger(length)) return false;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  try {
    const list = new net.BlockList();
    list.addSubnet(base, length, type);
    return list.check(String(address), type);
  } catch {
    return false;
  }
}

// Errors in short: QuickJS's exceptions print their whole WebAssembly VM otherwise.
const describe = (err) => {
  const message = err && err.message ? `${err.name || 'Error'}: ${err.message}` : String(err);
  const where = err && typeof err.stack === 'string' ? err.stack.split('\n').slice(0, 4).join(' | ') : '';
  return where && !where.startsWith(message) ? `${message} (${where})` : (where || message);
};

const pac = readFileSync(files[0], 'utf8');
const pairs = JSON.parse(readFileSync(files[1], 'utf8'));
let findProxyForURL;
try {
  const vm = await QuickJS.create();
  findProxyForURL = createPacResolver(vm, pac, { sandbox: withIsInNetEx ? { isInNetEx } : {} });
} catch (err) {
  process.stderr.write(`the PAC does not compile: ${describe(err)}\n`);
  process.exit(1);
}
// A URL whose evaluation throws answers "ERROR ..." so that the others are still compared.
const results = [];
for (const [url, host] of pairs) {
  try {
    results.push(await findProxyForURL(url, host));
  } catch (err) {
    results.push(`ERROR ${describe(err)}`);
  }
}
process.stdout.write(JSON.stringify(results) + '\n');
