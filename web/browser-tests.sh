#!/usr/bin/env bash
# The browser tests (needs chromium, chromedriver, wasm-bindgen-cli 0.2.130,
# trunk 0.21.14 and node; `.ci/run` installs them):
#   1. wasm-bindgen tests: the forward through browser WebGPU (headless
#      Chromium, SwiftShader) against ../shared/golden (tests/wasm_golden.rs);
#   2. `trunk build --release`, then the end-to-end test of the page
#      (web/e2e/e2e.test.mjs) on the assets in $SGRAF_ASSETS (default: the shipped demo in web/assets;
#      target/web-fixture: a fixture made from ../shared/golden) against
#      `sgraf rank`.
# Fails loudly when a tool is missing; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

for tool in chromium chromedriver wasm-bindgen-test-runner trunk node npm; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (see .ci/run for how to install it)" >&2; exit 1; }
done
want=$(sed -n '/^name = "wasm-bindgen"$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)
have=$(wasm-bindgen --version | awk '{print $2}')
[ "$want" = "$have" ] || { echo "error: wasm-bindgen CLI $have, Cargo.lock has $want: cargo install wasm-bindgen-cli --version $want" >&2; exit 1; }

echo "== wasm-bindgen tests in headless Chromium (browser WebGPU vs ../shared/golden)"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/web/webdriver.json"
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-600}
cargo test --release --target wasm32-unknown-unknown --no-default-features --test wasm_golden

echo "== trunk build --release"
trunk build --release
ls -l dist/*.wasm

echo "== end-to-end test of the page (WebGPU and the CPU fallback vs sgraf rank)"
[ -x target/release/sgraf ] || cargo build --release --bin sgraf
export SGRAF_ASSETS=${SGRAF_ASSETS:-web/assets}
if [ "$SGRAF_ASSETS" = target/web-fixture ]; then
  node web/e2e/make-fixture.mjs target/web-fixture
fi
(cd web/e2e && npm ci --no-audit --no-fund)
node --test --test-reporter=spec web/e2e/e2e.test.mjs
