// orster4d 4D asset viewer: WebGL2 Gaussian splatting of per-timestamp Gaussians.
//
// Conventions follow the package: OpenCV cameras (world-to-camera view matrices, +x right, +y down,
// +z forward, pinhole intrinsics in pixels with pixel centres at x + 0.5), world z up, orbit azimuth 0
// on the -y side. Each Gaussian is projected with the EWA Jacobian (0.3 px^2 low-pass, 3.33-sigma
// quad), alpha = min(0.99, opacity * exp(-power)), fragments under 1/255 dropped, drawn back to front
// (sorted by camera z whenever the camera or the frame changes) over the background colour.
// Colours are SH degree 0 (view-dependent terms are not drawn).
//
// Data comes from viewer_data.js (window.ORSTER4D_ASSET, written by orster4d.viewer.write_viewer).
// URL parameters: frame=i, camera=trajectory (follow the trajectory's camera), az/el/r (orbit, degrees
// and world units), width/height (fixed canvas size in pixels), ui=0 (hide controls), play=1.
// window.orster4d exposes the same controls to scripts (setFrame, setOrbit, followTrajectory).
"use strict";

(function () {
  const asset = window.ORSTER4D_ASSET;
  const params = new URLSearchParams(location.search);
  const canvas = document.getElementById("canvas");
  const status = document.getElementById("status");
  if (!asset) { status.textContent = "viewer_data.js is missing or did not load"; return; }
  const gl = canvas.getContext("webgl2", { antialias: false, alpha: false, premultipliedAlpha: false,
                                           preserveDrawingBuffer: true });
  if (!gl) { status.textContent = "this browser has no WebGL2"; return; }

  const N = asset.num_gaussians, T = asset.num_frames, ROW = 1024;
  const texRows = Math.max(1, Math.ceil(N / ROW));

  function decode(b64) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  // geometry[f]: N x 9 floats (mean xyz, covariance xx xy xz yy yz zz); colors[c]: N x 4 (rgb, opacity)
  const geometry = asset.geometry.map(decode);
  const colors = asset.colors.map(decode);

  // ------------------------------------------------------------------ shaders
  const VS = `#version 300 es
  precision highp float;
  precision highp int;
  uniform highp sampler2D uGeom;
  uniform highp sampler2D uColor;
  uniform mat4 uView;     // world -> camera (OpenCV)
  uniform vec4 uIntr;     // fx, fy, cx, cy (px)
  uniform vec2 uSize;     // width, height (px)
  in vec2 aCorner;
  in int aIndex;
  out vec4 vColor;
  out vec3 vConic;
  out vec2 vOffset;
  void main() {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // outside the clip volume: culled
    int col = aIndex % ${ROW}, row = aIndex / ${ROW};
    vec3 g0 = texelFetch(uGeom, ivec2(3 * col, row), 0).xyz;
    vec3 g1 = texelFetch(uGeom, ivec2(3 * col + 1, row), 0).xyz;
    vec3 g2 = texelFetch(uGeom, ivec2(3 * col + 2, row), 0).xyz;
    vec3 p = (uView * vec4(g0, 1.0)).xyz;
    if (p.z < 0.01) return;
    mat3 cov = mat3(g1.x, g1.y, g1.z,  g1.y, g2.x, g2.y,  g1.z, g2.y, g2.z);
    mat3 R = mat3(uView);
    mat3 cc = R * cov * transpose(R);
    float fx = uIntr.x, fy = uIntr.y, cx = uIntr.z, cy = uIntr.w;
    float tanx = 0.5 * uSize.x / fx, tany = 0.5 * uSize.y / fy;
    float tx = p.z * clamp(p.x / p.z, -(cx / fx + 0.3 * tanx), (uSize.x - cx) / fx + 0.3 * tanx);
    float ty = p.z * clamp(p.y / p.z, -(cy / fy + 0.3 * tany), (uSize.y - cy) / fy + 0.3 * tany);
    vec3 j0 = vec3(fx / p.z, 0.0, -fx * tx / (p.z * p.z));
    vec3 j1 = vec3(0.0, fy / p.z, -fy * ty / (p.z * p.z));
    float a = dot(j0, cc * j0) + 0.3, b = dot(j0, cc * j1), c = dot(j1, cc * j1) + 0.3;
    float det = a * c - b * b;
    if (det <= 0.0) return;
    float mid = 0.5 * (a + c);
    float r = ceil(3.33 * sqrt(mid + sqrt(max(mid * mid - det, 0.0))));
    vec2 m = vec2(fx * p.x / p.z + cx, fy * p.y / p.z + cy);
    if (m.x + r <= 0.0 || m.x - r >= uSize.x || m.y + r <= 0.0 || m.y - r >= uSize.y) return;
    vConic = vec3(c, -b, a) / det;
    vOffset = aCorner * r;
    vec2 px = m + vOffset;
    gl_Position = vec4(2.0 * px.x / uSize.x - 1.0, 1.0 - 2.0 * px.y / uSize.y, 0.0, 1.0);
    vColor = texelFetch(uColor, ivec2(col, row), 0);
  }`;
  const FS = `#version 300 es
  precision highp float;
  in vec4 vColor;
  in vec3 vConic;
  in vec2 vOffset;
  out vec4 outColor;
  void main() {
    vec2 d = vOffset;  // pixel centre - projected mean (px)
    float power = 0.5 * (vConic.x * d.x * d.x + vConic.z * d.y * d.y) + vConic.y * d.x * d.y;
    if (power < 0.0) discard;
    float alpha = min(0.99, vColor.a * exp(-power));
    if (alpha < 1.0 / 255.0) discard;
    outColor = vec4(vColor.rgb * alpha, alpha);  // premultiplied
  }`;

  function compile(type, src) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, VS));
  gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, FS));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  gl.useProgram(prog);
  const U = {};
  for (const name of ["uGeom", "uColor", "uView", "uIntr", "uSize"]) U[name] = gl.getUniformLocation(prog, name);

  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const cornerBuf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, cornerBuf);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const aCorner = gl.getAttribLocation(prog, "aCorner");
  gl.enableVertexAttribArray(aCorner);
  gl.vertexAttribPointer(aCorner, 2, gl.FLOAT, false, 0, 0);
  const indexBuf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, indexBuf);
  const aIndex = gl.getAttribLocation(prog, "aIndex");
  gl.enableVertexAttribArray(aIndex);
  gl.vertexAttribIPointer(aIndex, 1, gl.INT, 0, 0);
  gl.vertexAttribDivisor(aIndex, 1);

  function makeTexture(unit, width, format, internal) {
    const tex = gl.createTexture();
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(gl.TEXTURE_2D, tex);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.texImage2D(gl.TEXTURE_2D, 0, internal, width, texRows, 0, format, gl.FLOAT, null);
    return tex;
  }
  const geomTex = makeTexture(0, 3 * ROW, gl.RGB, gl.RGB32F);
  const colorTex = makeTexture(1, ROW, gl.RGBA, gl.RGBA32F);
  gl.uniform1i(U.uGeom, 0);
  gl.uniform1i(U.uColor, 1);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);

  function upload(unit, tex, data, floatsPerTexelRow) {
    const padded = new Float32Array(floatsPerTexelRow * texRows);
    padded.set(data);
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, floatsPerTexelRow === 9 * ROW ? 3 * ROW : ROW, texRows,
                     floatsPerTexelRow === 9 * ROW ? gl.RGB : gl.RGBA, gl.FLOAT, padded);
  }

  gl.disable(gl.DEPTH_TEST);
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);  // back to front, premultiplied
  const bg = asset.background;
  gl.clearColor(bg[0], bg[1], bg[2], 1.0);

  // ------------------------------------------------------------------ camera
  const DEG = Math.PI / 180;
  const traj = asset.trajectory;  // null, or {elevation_deg, radius, fov_deg, width, height, center, azimuth_offset_deg, num_frames, viewmats}
  const orbit = traj
    ? { az: traj.azimuth_offset_deg, el: traj.elevation_deg, r: traj.radius, target: traj.center.slice(), fov: traj.fov_deg }
    : { az: 0, el: 15, r: asset.extent.radius * 3, target: asset.extent.center.slice(), fov: 40 };
  let follow = false;

  function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function normalize(a) { const n = Math.hypot(a[0], a[1], a[2]); return [a[0] / n, a[1] / n, a[2] / n]; }
  function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

  // Row-major 4x4 world-to-camera matrix of the orbit camera (same math as orster4d.cameras.look_at).
  function orbitViewmat(o) {
    const az = o.az * DEG, el = o.el * DEG, t = o.target;
    const eye = [t[0] + o.r * Math.cos(el) * Math.sin(az), t[1] - o.r * Math.cos(el) * Math.cos(az), t[2] + o.r * Math.sin(el)];
    const fwd = normalize(sub(t, eye));
    const right = normalize(cross(fwd, [0, 0, 1]));
    const down = cross(fwd, right);
    return [right[0], right[1], right[2], -dot(right, eye),
            down[0], down[1], down[2], -dot(down, eye),
            fwd[0], fwd[1], fwd[2], -dot(fwd, eye),
            0, 0, 0, 1];
  }
  function currentViewmat() {
    return follow && traj ? traj.viewmats[frame] : orbitViewmat(orbit);
  }

  // ------------------------------------------------------------------ state and drawing
  let frame = 0, playing = false, dirty = true, uploadedFrame = -1, uploadedColor = -1;
  const order = new Int32Array(N), depth = new Float32Array(N);
  const ui = {
    slider: document.getElementById("time"), play: document.getElementById("play"),
    counter: document.getElementById("counter"), follow: document.getElementById("follow"),
    reset: document.getElementById("reset"),
  };
  ui.slider.max = String(T - 1);

  function resize() {
    const w = parseInt(params.get("width") || "0", 10), h = parseInt(params.get("height") || "0", 10);
    const dpr = (w && h) ? 1 : (window.devicePixelRatio || 1);
    const cw = w || Math.round(canvas.clientWidth * dpr), ch = h || Math.round(canvas.clientHeight * dpr);
    if (w && h) { canvas.style.width = w + "px"; canvas.style.height = h + "px"; }
    if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; dirty = true; }
  }

  function draw() {
    resize();
    const W = canvas.width, H = canvas.height;
    if (uploadedFrame !== frame) { upload(0, geomTex, geometry[frame], 9 * ROW); uploadedFrame = frame; }
    const ci = colors.length === 1 ? 0 : frame;
    if (uploadedColor !== ci) { upload(1, colorTex, colors[ci], 4 * ROW); uploadedColor = ci; }
    const vm = currentViewmat();
    // sort back to front by camera z
    const g = geometry[frame];
    for (let i = 0; i < N; i++) {
      order[i] = i;
      depth[i] = vm[8] * g[9 * i] + vm[9] * g[9 * i + 1] + vm[10] * g[9 * i + 2] + vm[11];
    }
    order.sort((a, b) => depth[b] - depth[a]);
    gl.bindBuffer(gl.ARRAY_BUFFER, indexBuf);
    gl.bufferData(gl.ARRAY_BUFFER, order, gl.DYNAMIC_DRAW);
    // pinhole intrinsics, centred: the trajectory's horizontal field of view, widened when the canvas is
    // wider than the trajectory's images so that their whole frame stays in view (same K at their size)
    const tanx = Math.tan(0.5 * orbit.fov * DEG), aspect = traj ? traj.width / traj.height : 1;
    const fx = W / H > aspect ? 0.5 * H * aspect / tanx : 0.5 * W / tanx;
    gl.uniform4f(U.uIntr, fx, fx, 0.5 * W, 0.5 * H);
    gl.uniform2f(U.uSize, W, H);
    // column-major upload of the row-major matrix
    gl.uniformMatrix4fv(U.uView, false, new Float32Array([vm[0], vm[4], vm[8], vm[12], vm[1], vm[5], vm[9], vm[13],
                                                          vm[2], vm[6], vm[10], vm[14], vm[3], vm[7], vm[11], vm[15]]));
    gl.viewport(0, 0, W, H);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.bindVertexArray(vao);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, N);
    ui.counter.textContent = `frame ${frame + 1} / ${T}   t = ${asset.times[frame].toFixed(3)}`;
    ui.slider.value = String(frame);
    dirty = false;
  }

  function setFrame(i) { frame = Math.max(0, Math.min(T - 1, i | 0)); dirty = true; }
  function setFollow(on) {
    follow = !!on && !!traj;
    ui.follow.checked = follow;
    dirty = true;
  }
  function leaveFollow() {
    if (!follow) return;
    // continue orbiting from the trajectory's view of this frame
    orbit.az = traj.azimuth_offset_deg + 360 * frame / traj.num_frames;
    orbit.el = traj.elevation_deg; orbit.r = traj.radius; orbit.target = traj.center.slice();
    setFollow(false);
  }

  let last = 0, acc = 0;
  function tick(now) {
    if (playing) {
      acc += Math.min(now - (last || now), 250);
      const step = 1000 / (asset.fps || 12);
      while (acc >= step) { acc -= step; setFrame((frame + 1) % T); }
    }
    last = now;
    if (dirty) draw();
    requestAnimationFrame(tick);
  }

  // ------------------------------------------------------------------ controls
  ui.slider.addEventListener("input", () => setFrame(parseInt(ui.slider.value, 10)));
  ui.play.addEventListener("click", () => { playing = !playing; ui.play.textContent = playing ? "pause" : "play"; acc = 0; });
  ui.follow.addEventListener("change", () => (ui.follow.checked ? setFollow(true) : leaveFollow()));
  ui.reset.addEventListener("click", () => {
    if (traj) { orbit.az = traj.azimuth_offset_deg; orbit.el = traj.elevation_deg; orbit.r = traj.radius; orbit.target = traj.center.slice(); }
    setFollow(false);
  });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey }; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    leaveFollow();
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) {
      const vm = orbitViewmat(orbit), k = orbit.r / canvas.clientHeight;
      for (let j = 0; j < 3; j++) orbit.target[j] -= k * (dx * vm[j] + dy * vm[4 + j]);  // along camera right / down
    } else {
      orbit.az -= 0.4 * dx;
      orbit.el = Math.max(-89, Math.min(89, orbit.el + 0.4 * dy));
    }
    dirty = true;
  });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); leaveFollow(); orbit.r *= Math.exp(0.001 * e.deltaY); dirty = true; }, { passive: false });
  window.addEventListener("resize", () => { dirty = true; });
  window.addEventListener("keydown", (e) => {
    if (e.code === "Space") ui.play.click();
    else if (e.code === "ArrowRight") setFrame((frame + 1) % T);
    else if (e.code === "ArrowLeft") setFrame((frame + T - 1) % T);
  });

  // ------------------------------------------------------------------ URL parameters and the script hook
  if (params.get("ui") === "0") document.getElementById("controls").style.display = "none";
  if (params.has("az")) orbit.az = parseFloat(params.get("az"));
  if (params.has("el")) orbit.el = parseFloat(params.get("el"));
  if (params.has("r")) orbit.r = parseFloat(params.get("r"));
  if (params.has("frame")) { ui.slider.value = params.get("frame"); ui.slider.dispatchEvent(new Event("input")); }
  if (params.get("camera") === "trajectory") setFollow(true);
  if (params.get("play") === "1") ui.play.click();
  window.orster4d = {
    get frame() { return frame; }, numFrames: T, numGaussians: N,
    setFrame(i) { setFrame(i); draw(); },
    setOrbit(az, el, r) { leaveFollow(); orbit.az = az; orbit.el = el; orbit.r = r; draw(); },
    followTrajectory(on) { setFollow(on); draw(); },
  };
  status.textContent = "";
  draw();
  document.body.dataset.ready = "1";
  requestAnimationFrame(tick);
})();
