// The Live tab's player (the js_on_load of its gr.HTML; `element`, `props` and `watch` come from
// Gradio): the camera in a <video>, frames drawn on a canvas at the server's working size and sent
// as JPEGs over the app's WebSocket (live_socket.py), the stylized frames shown in an <img>.
// A frame is sent when the reply to one arrives (IN_FLIGHT at a time), so none ever queues.
// When the socket cannot connect it says so and hands over to Gradio's stream (#live-use-stream).
// props.value: the style to stream, "" while the chosen style cannot run (no Start then).
const IN_FLIGHT = Number(new URLSearchParams(location.search).get("live_in_flight")) || 2;
const CONNECT_MS = 4000; // no socket by then: Gradio's stream instead
const CAMERA = { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false };
const QUALITY = 0.8; // the browser's JPEG of each frame

const $ = (name) => element.querySelector(`[data-live=${name}]`);
const button = $("button"), video = $("camera"), out = $("result"), rate = $("rate"), state = $("state");
const canvas = document.createElement("canvas");
const draw = canvas.getContext("2d", { willReadFrequently: true }); // CPU-backed: no GPU readback per JPEG
let socket = null, camera = null, size = null, inFlight = 0, shown = null, running = false, timer = null;

// The server's sentences are Markdown with **bold** only.
const say = (where, text) => {
  const escaped = (text || "").replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);
  where.innerHTML = escaped.replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>");
};

const send = () => {
  while (running && size && inFlight < IN_FLIGHT && socket.readyState === WebSocket.OPEN) {
    inFlight++;
    draw.drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((jpeg) => {
      if (running && socket.readyState === WebSocket.OPEN) socket.send(jpeg);
      else inFlight--;
    }, "image/jpeg", QUALITY);
  }
};

const show = (jpeg) => {
  const url = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
  const old = shown;
  out.onload = () => old && URL.revokeObjectURL(old);
  out.src = shown = url;
  out.hidden = false;
};

const hello = () => {
  socket.send(JSON.stringify({ style: props.value, width: video.videoWidth, height: video.videoHeight }));
};

const onMessage = (event) => {
  if (event.target !== socket) return; // stopped meanwhile: a frame still on its way is not shown
  if (typeof event.data !== "string") {
    inFlight--;
    show(event.data);
    send();
    return;
  }
  const reply = JSON.parse(event.data);
  if (reply.size) {
    [canvas.width, canvas.height] = reply.size;
    size = reply.size;
    say(state, "");
    send();
  }
  if (reply.rate) say(rate, reply.rate);
  if (reply.waiting) say(rate, reply.waiting);
  if (reply.again_in !== undefined) {
    inFlight--;
    clearTimeout(timer);
    timer = setTimeout(send, 1000 * reply.again_in);
  }
  if (reply.stopped !== undefined) stop(reply.stopped || null);
};

// The socket could not be opened (a proxy that does not pass WebSockets, an older server).
const useGradioStream = () => {
  stop();
  say(state, "**The fast live view cannot connect from here**, so the live view below uses the standard stream (slower): press **Click to Access Webcam**, then **Record**.");
  button.hidden = true;
  document.querySelector("#live-use-stream")?.click();
};

async function start() {
  running = true;
  button.textContent = "Stop";
  say(rate, "");
  say(state, "Starting the camera…");
  try {
    camera = await navigator.mediaDevices.getUserMedia(CAMERA);
  } catch (error) {
    stop();
    say(state, "**The camera could not be opened.** Allow this page to use it, then press Start again.");
    return;
  }
  if (!running) { camera.getTracks().forEach((track) => track.stop()); return; } // Stop meanwhile
  video.srcObject = camera;
  await video.play();
  say(state, "Connecting to the server… (the first stream after the server starts measures its speed: a few seconds)");
  const url = new URL("scenimefy/live", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = url.hash = "";
  const opened = setTimeout(useGradioStream, CONNECT_MS);
  socket = new WebSocket(url);
  socket.binaryType = "blob";
  socket.onopen = () => { clearTimeout(opened); hello(); };
  socket.onmessage = onMessage;
  socket.onclose = (event) => {
    if (!event.wasClean && socket.readyState !== WebSocket.OPEN && size === null && running) {
      clearTimeout(opened);
      useGradioStream();
    } else if (running) stop();
  };
}

// Stop: the camera off, the socket closed, the rate cleared; `sentence`: why (the style cannot run).
function stop(sentence = null) {
  running = false;
  size = null;
  inFlight = 0;
  clearTimeout(timer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  if (camera) { camera.getTracks().forEach((track) => track.stop()); camera = null; }
  video.srcObject = null;
  button.textContent = "Start";
  say(rate, "");
  say(state, sentence);
  button.disabled = !props.value;
}

button.onclick = () => (running ? stop() : start());
button.disabled = !props.value;
watch("value", () => {
  button.disabled = !props.value;
  if (running && props.value && socket?.readyState === WebSocket.OPEN) hello(); // another style
  else if (running && !props.value) stop(); // the live note says why
});
