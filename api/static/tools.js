// Which pixels an annotation tool sets: pure functions over a W x H grid, kept apart from the map so
// their rules are plain to read and to test. Each returns the indexes (y * W + x) of the pixels.

/** Pixels whose centre (x + 0.5, y + 0.5) lies inside the polygon (even-odd rule, image coordinates):
 * the rule GDAL's rasteriser and the vector-label import use too. */
export function polygonPixels(vertices, width, height) {
  const out = [];
  if (vertices.length < 3) return Int32Array.from(out);
  const ys = vertices.map((v) => v[1]);
  const y0 = Math.max(0, Math.floor(Math.min(...ys))), y1 = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  for (let y = y0; y <= y1; y++) {
    const yc = y + 0.5;
    const xs = [];
    for (let i = 0, j = vertices.length - 1; i < vertices.length; j = i++) {
      const [xa, ya] = vertices[j], [xb, yb] = vertices[i];
      if ((ya <= yc) !== (yb <= yc)) xs.push(xa + ((yc - ya) * (xb - xa)) / (yb - ya));
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // centres x + 0.5 in [xs[k], xs[k + 1])
      const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(width - 1, Math.ceil(xs[k + 1] - 0.5) - 1);
      for (let x = from; x <= to; x++) out.push(y * width + x);
    }
  }
  return Int32Array.from(out);
}

/** The connected region (4-neighbours) of equal values in `labels` that holds pixel (x, y). */
export function regionPixels(labels, width, height, x, y) {
  if (x < 0 || y < 0 || x >= width || y >= height) return new Int32Array(0);
  const start = y * width + x, value = labels[start];
  const seen = new Uint8Array(width * height);
  const stack = [start], out = [];
  seen[start] = 1;
  while (stack.length) {
    const i = stack.pop();
    out.push(i);
    const px = i % width;
    const next = [px > 0 ? i - 1 : -1, px < width - 1 ? i + 1 : -1, i >= width ? i - width : -1, i + width < width * height ? i + width : -1];
    for (const n of next) {
      if (n >= 0 && !seen[n] && labels[n] === value) {
        seen[n] = 1;
        stack.push(n);
      }
    }
  }
  return Int32Array.from(out);
}

/** Every pixel with the segment number of pixel (x, y) (SLIC segments are connected patches). */
export function segmentPixels(segments, width, height, x, y) {
  if (x < 0 || y < 0 || x >= width || y >= height) return new Int32Array(0);
  const value = segments[y * width + x];
  const out = [];
  for (let i = 0; i < segments.length; i++) if (segments[i] === value) out.push(i);
  return Int32Array.from(out);
}
