#!/usr/bin/env bash
# Copies uPlot's dist files from npm into vendor/, where the server embeds them
# (include_bytes!). To update uPlot: change the exact version in package.json, run
# `npm install` (updates package-lock.json), then this script, and commit vendor/.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
version=$(node -p "require('./node_modules/uplot/package.json').version")
cp node_modules/uplot/dist/uPlot.iife.min.js vendor/uPlot.iife.min.js
cp node_modules/uplot/dist/uPlot.min.css vendor/uPlot.min.css
cp node_modules/uplot/LICENSE vendor/uPlot.LICENSE
cat > vendor/README.md <<README
# vendor/

uPlot ${version} (MIT, see uPlot.LICENSE), copied from the npm package \`uplot\` by
\`../vendor.sh\`. To update: set the new exact version in \`../package.json\`, run
\`npm install\` there, then \`./vendor.sh\`, and commit this folder with package-lock.json.
README
echo "vendor/: uPlot ${version}"
