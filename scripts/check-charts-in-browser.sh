#!/usr/bin/env bash
# The charts of a real `autoglm bench --plot` run, opened in a browser: headless Chromium (Debian's
# chromium-headless-shell, installed when missing) renders each SVG to a PNG, and a check reads the PNG back
# (Pillow, in a virtual environment under .build/) to see the data: at every point the SVG places, the rendered
# pixel has its line's colour, and every legend entry is drawn. A documented check (docs/operations.md), not part of the
# test command: Chromium is a large download.
#   scripts/check-charts-in-browser.sh [.build/release/autoglm] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
autoglm=$(realpath "${1:-.build/release/autoglm}")
out="${2:-}"
. scripts/e2e/lib.sh
[ -n "$out" ] || out="$work/charts"
mkdir -p "$out"

browser=$(command -v chromium-headless-shell || true)
if [ -z "$browser" ]; then
    echo "installing Debian's chromium-headless-shell" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q chromium-headless-shell >/dev/null; else sudo apt-get install -y -q chromium-headless-shell >/dev/null; fi
    browser=$(command -v chromium-headless-shell)
fi
venv="$PWD/.build/venv-charts"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pillow==11.3.0
fi

"$autoglm" serve --model "$model" --port "$port" --max-sequences 4 > "$work/serve.log" 2>&1 &
server=$!
wait_ready
# Two runs with the same levels: the second is drawn dashed beside the first, as when comparing two servers.
"$autoglm" bench --base-url "http://127.0.0.1:$port" --concurrency 1,2,4 --num-prompts 24 --input-len 32 --output-len 32 \
    --output "$work/first.json" > "$work/bench1.log"
"$autoglm" bench --base-url "http://127.0.0.1:$port" --concurrency 1,2,4 --num-prompts 24 --input-len 32 --output-len 32 \
    --compare "$work/first.json" --plot "$out" > "$work/bench2.log"

for svg in "$out"/*.svg; do
    # The chart's own size, so that one SVG unit is one pixel.
    size=$("$venv/bin/python" -c 'import re,sys; t=open(sys.argv[1]).read(); m=re.search(r"width=\"([\d.]+)\" height=\"([\d.]+)\"", t); print(f"{round(float(m[1]))},{round(float(m[2]))}")' "$svg")
    "$browser" --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 --window-size="$size" \
        --screenshot="${svg%.svg}.png" "file://$svg" > /dev/null 2>&1
done
"$venv/bin/python" - "$out" <<'PY'
import glob, os, re, sys
import xml.etree.ElementTree as ET
from PIL import Image

ns = {"s": "http://www.w3.org/2000/svg"}
failures = 0
for svg in sorted(glob.glob(os.path.join(sys.argv[1], "*.svg"))):
    png = svg[:-4] + ".png"
    image = Image.open(png).convert("RGB")
    root = ET.parse(svg).getroot()
    def colour(hex_):
        return tuple(int(hex_[i:i + 2], 16) for i in (1, 3, 5))
    def near(a, b, tolerance=40):
        return all(abs(x - y) <= tolerance for x, y in zip(a, b))
    circles = root.findall("s:circle", ns)
    drawn = 0
    points = [(float(c.get("cx")), float(c.get("cy")), colour(c.get("fill"))) for c in circles]
    for i, (x, y, want) in enumerate(points):
        # A dot drawn later within its radius covers it (p90 and p99 at one value): that dot's colour shows it too.
        wanted = [want] + [w for (x2, y2, w) in points[i + 1:] if abs(x2 - x) <= 3 and abs(y2 - y) <= 3]
        # The 3-pixel dot's centre: the pixel there, or one beside it where lines cross.
        around = [image.getpixel((round(x) + dx, round(y) + dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        if any(near(p, w) for p in around for w in wanted):
            drawn += 1
    legends = [l for l in root.findall("s:line", ns) if l.get("stroke-width") == "2"]
    legend_ok = sum(1 for l in legends
                    if near(image.getpixel((round((float(l.get("x1")) + float(l.get("x2"))) / 2), round(float(l.get("y1"))))), colour(l.get("stroke"))))
    blank = len(set(image.resize((64, 64)).getdata())) < 4
    ok = circles and drawn == len(circles) and legend_ok == len(legends) and not blank
    failures += 0 if ok else 1
    print(f"{'ok' if ok else 'FAIL'}: {os.path.basename(png)} {image.size[0]}x{image.size[1]}: {drawn}/{len(circles)} data points "
          f"in their line's colour, {legend_ok}/{len(legends)} legend entries")
sys.exit(1 if failures else 0)
PY
echo "charts and their screenshots: $out"
