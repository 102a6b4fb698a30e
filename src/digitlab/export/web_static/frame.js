// digitlab's canvas -> 28x28 framing (digitlab.inference.images.prepare_digit), in
// JavaScript for the exported page: the same steps and the same arithmetic (float32
// where NumPy computes in float32, Pillow's resampling filters, NumPy's medians and
// least squares, SciPy's labels, distances and centre of mass), for a drawing at
// most 512x512 (the page's canvas is 280x280), so no shrinking step.
"use strict";

const MNIST_SIZE = 28;
const MNIST_BOX = 20;
const INK_THRESHOLD = 0.2;
const MIN_SIZE = 0.04;
const f32 = Math.fround;

// Python's round(): halves to even.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// NumPy's median and percentile (linear) of a Float32Array.
function sorted(values) {
  return Float32Array.from(values).sort();
}
function median(values) {
  const s = sorted(values);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : f32((s[n / 2 - 1] + s[n / 2]) / 2);
}
function percentile(values, q) {
  const s = sorted(values);
  const index = (q / 100) * (s.length - 1);
  const low = Math.floor(index);
  const high = Math.min(low + 1, s.length - 1);
  const t = index - low;
  return s[low] + (s[high] - s[low]) * t;
}

// Pillow's greyscale of RGB(A) pixels ("L": ITU-R 601 luma in fixed point), then
// digitlab's /255 in float32.
function greyOf(imageData) {
  const { data, width, height } = imageData;
  const grey = new Float32Array(width * height);
  const scale = f32(1 / 255);
  for (let i = 0; i < width * height; i++) {
    const l = (data[4 * i] * 19595 + data[4 * i + 1] * 38470 + data[4 * i + 2] * 7471 + 0x8000) >> 16;
    grey[i] = f32(l * scale);
  }
  return grey;
}

function medianOf(values) {
  const s = Float64Array.from(values).sort();
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// images._design: quadratic terms of pixel centres scaled to [-1, 1], float32.
function design(height, width) {
  const rows = [];
  for (let i = 0; i < height; i++) {
    const y = f32(f32(f32(f32(i + 0.5) / height) * 2) - 1);
    for (let j = 0; j < width; j++) {
      const x = f32(f32(f32(f32(j + 0.5) / width) * 2) - 1);
      rows.push([1, x, y, f32(x * x), f32(x * y), f32(y * y)]);
    }
  }
  return rows;
}

// Least squares by the normal equations (6 unknowns, well conditioned).
function leastSquares(rows, values) {
  const n = 6;
  const a = Array.from({ length: n }, () => new Float64Array(n + 1));
  rows.forEach((row, r) => {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) a[i][j] += row[i] * row[j];
      a[i][n] += row[i] * values[r];
    }
  });
  for (let c = 0; c < n; c++) {
    let pivot = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[pivot][c])) pivot = r;
    [a[c], a[pivot]] = [a[pivot], a[c]];
    if (a[c][c] === 0) continue;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const factor = a[r][c] / a[c][c];
      for (let k = c; k <= n; k++) a[r][k] -= factor * a[c][k];
    }
  }
  return Array.from({ length: n }, (_, i) => (a[i][i] === 0 ? 0 : a[i][n] / a[i][i]));
}

// images._fit_lighting: the page's brightness without the ink, a robust quadratic
// fitted on a 48x48 thumbnail (outer sixth first, then every pixel that agrees).
function fitLighting(work, width, height) {
  const factor = Math.sqrt((48 * 48) / (width * height));
  const big = width * height > 48 * 48;
  const tw = big ? Math.max(1, roundHalfEven(width * factor)) : width;
  const th = big ? Math.max(1, roundHalfEven(height * factor)) : height;
  const thumb = big ? resample(work, width, height, tw, th, "box") : work;
  const rows = design(th, tw);
  const values = Float64Array.from(thumb);
  const ry = Math.max(1, Math.floor(th / 6)), rx = Math.max(1, Math.floor(tw / 6));
  let keep = new Uint8Array(values.length);
  let ringCount = 0;
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) {
      const inner = i >= ry && i < th - ry && j >= rx && j < tw - rx;
      keep[i * tw + j] = inner ? 0 : 1;
      ringCount += inner ? 0 : 1;
    }
  }
  if (ringCount < 12) keep.fill(1);
  // images._fit_lighting's digital-image case: most of the thumbnail is exactly
  // the ring's median grey, and that grey is the page.
  const ringValues = [];
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) {
      if (!(i >= ry && i < th - ry && j >= rx && j < tw - rx)) ringValues.push(values[i * tw + j]);
    }
  }
  const background = medianOf(ringValues);
  let same = 0;
  for (const v of values) same += v === background ? 1 : 0;
  if (same * 2 >= values.length) {
    return new Float32Array(width * height).fill(Math.min(Math.max(background, 0), 1));
  }
  let coefficients = [medianOf(values), 0, 0, 0, 0, 0];
  const predict = (row, c) => row.reduce((sum, v, k) => sum + v * c[k], 0);
  for (let iteration = 0; iteration < 5; iteration++) {
    const chosen = [];
    keep.forEach((k, i) => k && chosen.push(i));
    if (chosen.length < 12) break;
    coefficients = leastSquares(chosen.map((i) => rows[i]), chosen.map((i) => values[i]));
    const residual = values.map((v, i) => v - predict(rows[i], coefficients));
    const centre = medianOf(chosen.map((i) => residual[i]));
    const spread = 1.4826 * medianOf(chosen.map((i) => Math.abs(residual[i] - centre)));
    const limit = Math.max(2.5 * spread, 0.01);
    const next = Uint8Array.from(residual, (r) => (Math.abs(r - centre) <= limit ? 1 : 0));
    if (next.every((k, i) => k === keep[i])) break;
    keep = next;
  }
  const c32 = coefficients.map(f32);
  const surface = new Float32Array(width * height);
  design(height, width).forEach((row, i) => {
    surface[i] = Math.min(1, Math.max(0, f32(predict(row, c32))));
  });
  return surface;
}

// images._ink_strength: strength in [0, 1] whatever the polarity, and the noise.
function inkStrength(grey, width, height) {
  const surface = fitLighting(grey, width, height);
  const residual = new Float32Array(grey.length);
  for (let i = 0; i < grey.length; i++) residual[i] = f32(grey[i] - surface[i]);
  const centre = median(residual);
  const deviation = new Float32Array(grey.length);
  for (let i = 0; i < grey.length; i++) deviation[i] = Math.abs(f32(residual[i] - centre));
  const noise = 1.4826 * median(deviation);
  const margin = Math.max(3 * noise, 0.02);
  let dark = 0, light = 0;
  for (const r of residual) {
    dark += Math.max(0, f32(-r - margin));
    light += Math.max(0, f32(r - margin));
  }
  const paper = new Float32Array(grey.length);
  const strength = new Float32Array(grey.length);
  for (let i = 0; i < grey.length; i++) {
    const darkInk = dark >= light;
    paper[i] = darkInk ? Math.max(surface[i], f32(0.05)) : Math.max(f32(1 - surface[i]), f32(0.05));
    const s = f32((darkInk ? -residual[i] : residual[i]) / paper[i]);
    strength[i] = Math.min(1, Math.max(0, s));
  }
  return { strength, noise: noise / median(paper) };
}

// Connected components of mask (8-connectivity), in SciPy's label order, with
// their bounding boxes [y0, y1, x0, x1) and pixel lists.
function components(mask, width, height) {
  const labels = new Int32Array(width * height);
  const found = [];
  const stack = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    const label = found.length + 1;
    const pixels = [];
    let y0 = height, y1 = 0, x0 = width, x1 = 0;
    labels[start] = label;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop();
      pixels.push(p);
      const y = (p / width) | 0, x = p % width;
      if (y < y0) y0 = y;
      if (y + 1 > y1) y1 = y + 1;
      if (x < x0) x0 = x;
      if (x + 1 > x1) x1 = x + 1;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = label;
            stack.push(q);
          }
        }
      }
    }
    found.push({ label, pixels, box: [y0, y1, x0, x1] });
  }
  return found;
}

// Squared Euclidean distance to the nearest set pixel (Felzenszwalb & Huttenlocher),
// what scipy.ndimage.distance_transform_edt computes, squared.
function squaredDistance(set, width, height) {
  const INF = 1e20;
  const d = new Float64Array(width * height);
  for (let i = 0; i < d.length; i++) d[i] = set[i] ? 0 : INF;
  const line = (get, put, n) => {
    const f = new Float64Array(n);
    for (let i = 0; i < n; i++) f[i] = get(i);
    const v = new Int32Array(n);
    const z = new Float64Array(n + 1);
    let k = 0;
    v[0] = 0;
    z[0] = -INF;
    z[1] = INF;
    for (let q = 1; q < n; q++) {
      let s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
      while (s <= z[k]) {
        k--;
        s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
      }
      k++;
      v[k] = q;
      z[k] = s;
      z[k + 1] = INF;
    }
    k = 0;
    for (let q = 0; q < n; q++) {
      while (z[k + 1] < q) k++;
      put(q, (q - v[k]) * (q - v[k]) + f[v[k]]);
    }
  };
  for (let x = 0; x < width; x++) line((y) => d[y * width + x], (y, value) => { d[y * width + x] = value; }, height);
  for (let y = 0; y < height; y++) line((x) => d[y * width + x], (x, value) => { d[y * width + x] = value; }, width);
  return d;
}

// Pillow's resampling (Resample.c) of a float32 ("F") image: coefficients, then a
// horizontal pass into a float32 image, then a vertical one.
const FILTERS = {
  box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: { support: 1.0, weight: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
};

function coefficients(inSize, in0, in1, outSize, filter) {
  const scale = (in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const bounds = [];
  for (let xx = 0; xx < outSize; xx++) {
    const centre = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    let xmin = Math.trunc(centre - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(centre + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = new Float64Array(xmax);
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.weight((x + xmin - centre + 0.5) * ss);
      ww += k[x];
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
    bounds.push({ min: xmin, k });
  }
  return bounds;
}

export function resample(image, width, height, outWidth, outHeight, filterName, box) {
  const filter = FILTERS[filterName];
  // Pillow takes the box as C floats (float32).
  const [bx0, by0, bx1, by1] = (box || [0, 0, width, height]).map(Math.fround);
  const horizontal = coefficients(width, bx0, bx1, outWidth, filter);
  const vertical = coefficients(height, by0, by1, outHeight, filter);
  const first = vertical[0].min;
  const last = vertical[outHeight - 1].min + vertical[outHeight - 1].k.length;
  const rows = last - first;
  const temp = new Float32Array(outWidth * rows);
  for (let y = 0; y < rows; y++) {
    const row = (y + first) * width;
    for (let xx = 0; xx < outWidth; xx++) {
      const { min, k } = horizontal[xx];
      let ss = 0;
      for (let x = 0; x < k.length; x++) ss += image[row + x + min] * k[x];
      temp[y * outWidth + xx] = ss;
    }
  }
  const out = new Float32Array(outWidth * outHeight);
  for (let yy = 0; yy < outHeight; yy++) {
    const { min, k } = vertical[yy];
    for (let xx = 0; xx < outWidth; xx++) {
      let ss = 0;
      for (let y = 0; y < k.length; y++) ss += temp[(y + min - first) * outWidth + xx] * k[y];
      out[yy * outWidth + xx] = ss;
    }
  }
  return out;
}

function centreOfMass(image, width, height) {
  let total = 0, sy = 0, sx = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = image[y * width + x];
      total += v;
      sy += v * y;
      sx += v * x;
    }
  }
  return [sy / total, sx / total];
}

// images._edges: where a profile first and last crosses level, to a fraction of a pixel.
function edges(profile, level) {
  let first = -1, last = -1;
  for (let i = 0; i < profile.length; i++) {
    if (profile[i] >= level) {
      if (first < 0) first = i;
      last = i;
    }
  }
  let outside = first > 0 ? profile[first - 1] : 0;
  const start = first - 0.5 + (level - outside) / (profile[first] - outside);
  outside = last + 1 < profile.length ? profile[last + 1] : 0;
  const stop = last + 0.5 + (profile[last] - level) / (profile[last] - outside);
  return [Math.max(0, start), Math.min(profile.length, stop)];
}

// images._centre_in_frame: a <= 20x20 digit pasted with its centre of mass on (14, 14).
function centreInFrame(digit, width, height) {
  const frame = new Float32Array(MNIST_SIZE * MNIST_SIZE);
  let total = 0;
  for (const v of digit) total += v;
  const [cy, cx] = total > 0 ? centreOfMass(digit, width, height) : [(height - 1) / 2, (width - 1) / 2];
  const top = Math.min(Math.max(roundHalfEven(MNIST_SIZE / 2 - cy), 0), MNIST_SIZE - height);
  const left = Math.min(Math.max(roundHalfEven(MNIST_SIZE / 2 - cx), 0), MNIST_SIZE - width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) frame[(top + y) * MNIST_SIZE + left + x] = digit[y * width + x];
  }
  return frame;
}

// images._frame: ink (strength in [0, 1]) framed like an MNIST digit.
function frameInk(crop, width, height, level) {
  const rowMax = new Float32Array(height);
  const colMax = new Float32Array(width);
  let r0 = height, r1 = -1, c0 = width, c1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = crop[y * width + x];
      if (v > rowMax[y]) rowMax[y] = v;
      if (v > colMax[x]) colMax[x] = v;
      if (v !== 0) {
        r0 = Math.min(r0, y); r1 = Math.max(r1, y);
        c0 = Math.min(c0, x); c1 = Math.max(c1, x);
      }
    }
  }
  if (Math.max(r1 - r0, c1 - c0) + 1 === MNIST_BOX) {
    const h = r1 - r0 + 1, w = c1 - c0 + 1;
    const digit = new Float32Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) digit[y * w + x] = crop[(r0 + y) * width + c0 + x];
    return centreInFrame(digit, w, h);
  }
  const [top, bottom] = edges(rowMax, level);
  const [left, right] = edges(colMax, level);
  const step = Math.max(bottom - top, right - left) / MNIST_BOX;
  const factor = Math.max(1, Math.ceil(4 / step));
  let image = crop, w = width, h = height;
  if (factor > 1) {
    image = resample(crop, width, height, width * factor, height * factor, "bilinear");
    w = width * factor;
    h = height * factor;
  }
  const halfHeight = (bottom - top) / step / 2, halfWidth = (right - left) / step / 2;
  const render = (cy, cx) => {
    const half = (MNIST_SIZE / 2) * step;
    const x0 = (cx - half) * factor, x1 = (cx + half) * factor;
    const y0 = (cy - half) * factor, y1 = (cy + half) * factor;
    // Zero padding as far as the frame reaches past the crop, and two pixels more.
    const padTop = Math.max(0, Math.ceil(-y0)) + 2, padLeft = Math.max(0, Math.ceil(-x0)) + 2;
    const padBottom = Math.max(0, Math.ceil(y1 - h)) + 2, padRight = Math.max(0, Math.ceil(x1 - w)) + 2;
    const pw = w + padLeft + padRight, ph = h + padTop + padBottom;
    const binary = new Float32Array(pw * ph);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) binary[(y + padTop) * pw + x + padLeft] = image[y * w + x] >= level ? 1 : 0;
    }
    const box = [x0 + padLeft, y0 + padTop, x1 + padLeft, y1 + padTop];
    return resample(binary, pw, ph, MNIST_SIZE, MNIST_SIZE, "box", box);
  };
  const cy = (top + bottom) / 2, cx = (left + right) / 2;
  const first = render(cy, cx);
  const [my, mx] = centreOfMass(first, MNIST_SIZE, MNIST_SIZE);
  const middle = MNIST_SIZE / 2;
  const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const moveY = clip(middle - my, halfHeight - middle, middle - halfHeight);
  const moveX = clip(middle - mx, halfWidth - middle, middle - halfWidth);
  return render(cy - moveY * step, cx - moveX * step);
}

// prepare_digit for a canvas: {pixels: Float32Array(784) light on black, hasInk}.
export function prepareCanvas(imageData) {
  const { width, height } = imageData;
  const grey = greyOf(imageData);
  const { strength, noise } = inkStrength(grey, width, height);
  const candidates = [];
  for (const v of strength) if (v > INK_THRESHOLD) candidates.push(v);
  const blank = { pixels: new Float32Array(MNIST_SIZE * MNIST_SIZE), hasInk: false };
  if (!candidates.length) return blank;
  const level = percentile(candidates, 90);
  const cut = Math.max(INK_THRESHOLD, 0.5 * level);
  const mask = new Uint8Array(strength.length);
  for (let i = 0; i < strength.length; i++) mask[i] = strength[i] > cut ? 1 : 0;
  const smallest = Math.max(2, MIN_SIZE * Math.min(width, height));
  const marks = components(mask, width, height).filter(
    (c) => Math.max(c.box[1] - c.box[0], c.box[3] - c.box[2]) >= smallest
  );
  if (!marks.length) return blank;
  const noiseFloor = Math.min(3 * noise, 0.5 * INK_THRESHOLD);
  // images._normalise: the marks' strokes and their soft fringe, nothing else.
  let y0 = Math.min(...marks.map((c) => c.box[0])), y1 = Math.max(...marks.map((c) => c.box[1]));
  let x0 = Math.min(...marks.map((c) => c.box[2])), x1 = Math.max(...marks.map((c) => c.box[3]));
  const fringe = Math.max(2, roundHalfEven(0.08 * Math.max(y1 - y0, x1 - x0)));
  y0 = Math.max(0, y0 - fringe); y1 = Math.min(height, y1 + fringe);
  x0 = Math.max(0, x0 - fringe); x1 = Math.min(width, x1 + fringe);
  const cw = x1 - x0, ch = y1 - y0;
  const kept = new Uint8Array(cw * ch);
  for (const c of marks) {
    for (const p of c.pixels) kept[(((p / width) | 0) - y0) * cw + (p % width) - x0] = 1;
  }
  const distance = squaredDistance(kept, cw, ch);
  const span = Math.max(level - noiseFloor, 1e-6);
  const crop = new Float32Array(cw * ch);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      const keep = distance[y * cw + x] <= fringe * fringe;
      const value = keep ? strength[(y + y0) * width + x + x0] : 0;
      crop[y * cw + x] = Math.min(1, Math.max(0, f32(f32(value - noiseFloor) / span)));
    }
  }
  const frame = frameInk(crop, cw, ch, (cut - noiseFloor) / span);
  for (let i = 0; i < frame.length; i++) frame[i] = Math.min(1, Math.max(0, frame[i]));
  return { pixels: frame, hasInk: true };
}
