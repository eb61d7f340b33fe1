// The map: an image with pan and zoom, the class layer (editable with a brush) and the flags on top.
//
// Everything lives in one "stage" of W x H CSS pixels (one per image pixel) moved by a CSS
// transform, so the image, the class canvas and the flag SVG stay registered at any zoom.
// Flags arrive in the source CRS; they are mapped to pixels by inverting the grid's affine
// transform [a, b, c, d, e, f] (x = a*col + b*row + c, y = d*col + e*row + f).

const SVG_NS = "http://www.w3.org/2000/svg";
const MIN_ZOOM = 0.05;
const MAX_ZOOM = 40;
const CLICK_SLOP = 4; // pixels a pointer may move and still count as a click
const MAX_UNDO = 30; // brush strokes kept for undo (one copy of the class map each) ...
const UNDO_BYTES = 200e6; // ... but no more copies than fit in this many bytes (large images)

/** The function that maps source-CRS (x, y) to pixel (col, row) for a rasterio Affine. */
export function inverseAffine([a, b, c, d, e, f]) {
  const det = a * e - b * d;
  if (!det) throw new Error("the result's grid transform cannot be inverted");
  return (x, y) => [(e * (x - c) - b * (y - f)) / det, (-d * (x - c) + a * (y - f)) / det];
}

function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

export class Viewer {
  constructor(viewport) {
    this.viewport = viewport;
    this.stage = viewport.querySelector(".stage");
    this.image = this.stage.querySelector("img");
    this.canvas = this.stage.querySelector("canvas");
    this.svg = this.stage.querySelector("svg");
    this.cursor = viewport.querySelector(".brush-cursor");
    this.width = 0;
    this.height = 0;
    this.zoom = 1;
    this.tx = 0;
    this.ty = 0;
    this.tool = "pan"; // or "paint"
    this.brush = { classId: 1, radius: 4 };
    this.ids = null; // Uint8Array of class ids, W x H, when the class layer is loaded
    this.original = null; // the ids as loaded, to count edits
    this.history = []; // ids before each brush stroke, newest last (undo)
    this.palette = new Map(); // class id -> [r, g, b]
    this.onSelect = () => {};
    this.onEdit = () => {}; // after each brush stroke and undo
    this._bindInput();
  }

  /** Show a new image of width x height pixels, clearing flags and classes, and fit it. */
  async setImage(url, width, height) {
    this.width = width;
    this.height = height;
    for (const el of [this.stage, this.image, this.canvas, this.svg]) {
      el.style.width = `${width}px`;
      el.style.height = `${height}px`;
    }
    this.canvas.width = width;
    this.canvas.height = height;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.replaceChildren();
    this.ids = null;
    this.original = null;
    this.history = [];
    this.canvas.getContext("2d").clearRect(0, 0, width, height);
    this.viewport.classList.add("has-image");
    await this.swapImage(url);
    this.fit();
  }

  /** Change the picture under the layers (after / before) without touching anything else. */
  swapImage(url) {
    this.image.hidden = !url;
    if (!url) {
      this.image.removeAttribute("src");
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.image.onload = () => resolve();
      this.image.onerror = () => reject(new Error(`could not load the image ${url}`));
      this.image.src = url;
    });
  }

  /** Draw flags (a GeoJSON FeatureCollection in the source CRS) with colours by kind. */
  setFlags(collection, transform, kindColors) {
    const toPixel = inverseAffine(transform);
    this.svg.replaceChildren();
    for (const feature of collection.features || []) {
      const p = feature.properties || {};
      const d = ringsOf(feature.geometry).map((ring) => "M" + ring.map(([x, y]) => {
        const [col, row] = toPixel(x, y);
        return `${col.toFixed(2)} ${row.toFixed(2)}`;
      }).join("L") + "Z").join("");
      if (!d) continue;
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", "flag" + (p.suspected_illegal ? " suspected" : ""));
      path.dataset.id = String(p.id);
      path.dataset.kind = p.kind;
      path.dataset.suspected = String(!!p.suspected_illegal);
      const rgb = kindColors[p.kind] || [255, 255, 255];
      path.style.setProperty("--kind", `rgb(${rgb.join(",")})`);
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `#${p.id} ${p.kind}${p.suspected_illegal ? " (suspected illegal)" : ""}`;
      path.append(title);
      this.svg.append(path);
    }
  }

  /** Show only the flags for which show({kind, suspected}) is true. */
  filterFlags(show) {
    for (const path of this.svg.querySelectorAll(".flag")) {
      path.classList.toggle("hidden", !show({ kind: path.dataset.kind, suspected: path.dataset.suspected === "true" }));
    }
  }

  select(id) {
    for (const path of this.svg.querySelectorAll(".flag")) path.classList.toggle("selected", path.dataset.id === String(id));
  }

  /** Zoom so that the flag with this id fills most of the view. */
  zoomToFlag(id) {
    const path = this.svg.querySelector(`.flag[data-id="${CSS.escape(String(id))}"]`);
    if (!path) return;
    const box = path.getBBox();
    const pad = Math.max(box.width, box.height) * 0.6 + 8;
    this.fitBox(box.x - pad, box.y - pad, box.width + 2 * pad, box.height + 2 * pad, 8);
  }

  fit() {
    this.fitBox(0, 0, this.width, this.height, 4);
  }

  fitBox(x, y, w, h, maxZoom) {
    const vw = this.viewport.clientWidth, vh = this.viewport.clientHeight;
    if (!w || !h || !vw || !vh) return;
    this.zoom = Math.min(maxZoom, Math.max(MIN_ZOOM, Math.min(vw / w, vh / h)));
    this.tx = (vw - w * this.zoom) / 2 - x * this.zoom;
    this.ty = (vh - h * this.zoom) / 2 - y * this.zoom;
    this._apply();
  }

  zoomAt(factor, cx, cy) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    this.tx = cx - (cx - this.tx) * (zoom / this.zoom);
    this.ty = cy - (cy - this.ty) * (zoom / this.zoom);
    this.zoom = zoom;
    this._apply();
  }

  _apply() {
    this.stage.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.zoom})`;
    this.stage.style.setProperty("--zoom", String(this.zoom));
    this.viewport.classList.toggle("zoomed-in", this.zoom >= 2);
  }

  /** Viewport client coordinates -> image pixel coordinates. */
  toImage(clientX, clientY) {
    const r = this.viewport.getBoundingClientRect();
    return [(clientX - r.left - this.tx) / this.zoom, (clientY - r.top - this.ty) / this.zoom];
  }

  // ---- class layer -------------------------------------------------------------------------

  setPalette(classes) {
    this.palette = new Map(classes.map((c) => [c.id, c.color]));
  }

  /** Load a W x H array of class ids as the class layer (a copy: edits never touch the original). */
  setClasses(ids) {
    if (ids.length !== this.width * this.height) throw new Error("the class map does not match the image size");
    this.original = ids;
    this.ids = ids.slice();
    this.history = [];
    this._render(0, 0, this.width, this.height);
  }

  /** Pixels whose class differs from the loaded class map. */
  changedPixels() {
    if (!this.ids) return 0;
    let n = 0;
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== this.original[i]) n++;
    return n;
  }

  /** Take back the last brush stroke; false when there is none. */
  undo() {
    const previous = this.history.pop();
    if (!previous) return false;
    this.ids = previous;
    this._render(0, 0, this.width, this.height);
    this.onEdit();
    return true;
  }

  /** Repaint the canvas for a rectangle of the id array (ignore = transparent). */
  _render(x0, y0, w, h) {
    if (w <= 0 || h <= 0) return;
    const ctx = this.canvas.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const rgb = this.palette.get(this.ids[(y0 + y) * this.width + x0 + x]);
        const o = (y * w + x) * 4;
        if (rgb) {
          img.data[o] = rgb[0];
          img.data[o + 1] = rgb[1];
          img.data[o + 2] = rgb[2];
          img.data[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, x0, y0);
  }

  /** Paint a disc of the brush class at image pixel (cx, cy); returns how many pixels changed. */
  paintDisc(cx, cy) {
    if (!this.ids) return 0;
    const r = this.brush.radius, id = this.brush.classId;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(this.width - 1, Math.floor(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(this.height - 1, Math.floor(cy + r));
    let changed = 0;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy > r * r) continue;
        const i = y * this.width + x;
        if (this.ids[i] !== id) {
          this.ids[i] = id;
          changed++;
        }
      }
    }
    if (changed) this._render(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    return changed;
  }

  /** Paint along a segment so fast strokes leave no gaps. */
  paintLine(ax, ay, bx, by) {
    const steps = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / Math.max(1, this.brush.radius / 2)));
    let changed = 0;
    for (let s = 1; s <= steps; s++) changed += this.paintDisc(ax + ((bx - ax) * s) / steps, ay + ((by - ay) * s) / steps);
    return changed;
  }

  setTool(tool) {
    this.tool = tool;
    this.viewport.classList.toggle("painting", tool === "paint");
  }

  /** The brush outline under the pointer, at the brush's size on screen. */
  _moveCursor(ev) {
    this.cursor.hidden = !(this.tool === "paint" && this.ids);
    if (this.cursor.hidden) return;
    const r = this.viewport.getBoundingClientRect();
    const d = Math.max(4, 2 * this.brush.radius * this.zoom);
    Object.assign(this.cursor.style, { width: `${d}px`, height: `${d}px`,
      left: `${ev.clientX - r.left - d / 2}px`, top: `${ev.clientY - r.top - d / 2}px` });
  }

  // ---- input -------------------------------------------------------------------------------

  _bindInput() {
    const vp = this.viewport;
    vp.addEventListener("wheel", (ev) => {
      if (!this.width) return;
      ev.preventDefault();
      const r = vp.getBoundingClientRect();
      this.zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });

    let drag = null;
    vp.addEventListener("pointerdown", (ev) => {
      if (!this.width || (ev.button !== 0 && ev.button !== 1)) return;
      // paint with the left button in paint mode; shift or the middle button always pans
      const painting = this.tool === "paint" && this.ids && ev.button === 0 && !ev.shiftKey;
      drag = { painting, x: ev.clientX, y: ev.clientY, tx: this.tx, ty: this.ty, moved: 0, target: ev.target,
        last: this.toImage(ev.clientX, ev.clientY) };
      vp.setPointerCapture(ev.pointerId);
      if (painting) {
        this.history.push(this.ids.slice());
        const limit = Math.max(1, Math.min(MAX_UNDO, Math.floor(UNDO_BYTES / this.ids.length)));
        while (this.history.length > limit) this.history.shift();
        this.paintDisc(...drag.last);
      }
      ev.preventDefault();
    });
    vp.addEventListener("pointermove", (ev) => {
      this._moveCursor(ev);
      if (!drag) return;
      drag.moved = Math.max(drag.moved, Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y));
      if (drag.painting) {
        const here = this.toImage(ev.clientX, ev.clientY);
        this.paintLine(...drag.last, ...here);
        drag.last = here;
      } else {
        this.tx = drag.tx + ev.clientX - drag.x;
        this.ty = drag.ty + ev.clientY - drag.y;
        this._apply();
      }
    });
    const end = () => {
      if (drag?.painting) this.onEdit();
      if (drag && !drag.painting && drag.moved < CLICK_SLOP && drag.target.classList?.contains("flag")) {
        this.onSelect(drag.target.dataset.id);
      }
      drag = null;
    };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", () => { drag = null; });
    vp.addEventListener("pointerleave", () => { this.cursor.hidden = true; });
  }
}
