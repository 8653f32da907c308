// Shoal's player: hls.js with p2p-media-loader 2.3, fed by a Shoal edge and Shoal's tracker.
//
// Query parameters:
//   src      master playlist URL (http://<edge>/v/<id>/master.m3u8)            required
//   tracker  WebSocket URL of the tracker (ws://host:port)                     required
//   swarm    swarm id: shoal-<id> for /v/<id>/master.m3u8 (default: derived from src)
//   level    lock playback to this variant index (default: adaptive)
//   hdw      p2p-media-loader highDemandTimeWindow, seconds (default: the library's, 15)
//
// window.shoalStats holds the counters below, summed from p2p-media-loader's events (the
// library keeps no totals itself).
import Hls from "hls.js";
import { HlsJsP2PEngine } from "p2p-media-loader-hlsjs";

const params = new URLSearchParams(location.search);
const stats = {
  httpBytes: 0,
  p2pBytes: 0,
  uploadedBytes: 0,
  peers: 0,
  segmentsLoaded: 0,
  segmentsFromPeers: 0,
  segmentErrors: 0, // failed attempts (a P2P timeout, say); the library retries or goes HTTP
  currentTime: 0,
  p2pBytesByPeer: {},
  uploadedBytesByPeer: {},
  errors: [], // what stops playback or P2P: fatal hls.js errors, tracker errors
};
window.shoalStats = stats;

function swarmOf(src) {
  const match = new URL(src, location.href).pathname.match(/^\/v\/([^/]+)\//);
  return match ? `shoal-${match[1]}` : undefined;
}

function fail(message) {
  stats.errors.push(String(message));
  console.error(message);
}

function add(totals, key, bytes) {
  totals[key] = (totals[key] ?? 0) + bytes;
}

function start() {
  const src = params.get("src");
  const tracker = params.get("tracker");
  if (!src || !tracker) return fail("missing ?src=<master playlist URL>&tracker=<ws URL>");
  if (!Hls.isSupported()) return fail("this browser has no Media Source Extensions");

  const core = {
    announceTrackers: [tracker],
    rtcConfig: { iceServers: [] },
    swarmId: params.get("swarm") ?? swarmOf(src),
  };
  if (params.has("hdw")) core.highDemandTimeWindow = Number(params.get("hdw"));

  const HlsWithP2P = HlsJsP2PEngine.injectMixin(Hls);
  const hls = new HlsWithP2P({ p2p: { core, onHlsJsCreated: watch } });
  const video = document.getElementById("video");
  video.addEventListener("timeupdate", () => { stats.currentTime = video.currentTime; });
  hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) fail(`hls.js: ${data.details}`); });
  if (params.has("level")) {
    hls.on(Hls.Events.MANIFEST_PARSED, () => { hls.currentLevel = Number(params.get("level")); });
  }
  hls.loadSource(src);
  hls.attachMedia(video);
  video.play().catch((error) => fail(`play: ${error}`));
  window.shoalHls = hls;
}

function watch(hls) {
  const engine = hls.p2pEngine;
  engine.addEventListener("onChunkDownloaded", (bytes, source, peerId) => {
    if (source === "p2p") {
      stats.p2pBytes += bytes;
      add(stats.p2pBytesByPeer, peerId, bytes);
    } else {
      stats.httpBytes += bytes;
    }
  });
  engine.addEventListener("onChunkUploaded", (bytes, peerId) => {
    stats.uploadedBytes += bytes;
    add(stats.uploadedBytesByPeer, peerId, bytes);
  });
  engine.addEventListener("onSegmentLoaded", (details) => {
    stats.segmentsLoaded += 1;
    if (details.downloadSource === "p2p") stats.segmentsFromPeers += 1;
  });
  engine.addEventListener("onPeerConnect", () => { stats.peers += 1; });
  engine.addEventListener("onPeerClose", () => { stats.peers -= 1; });
  engine.addEventListener("onSegmentError", () => { stats.segmentErrors += 1; });
  engine.addEventListener("onTrackerError", (e) => fail(`tracker: ${e.error}`));
}

setInterval(() => {
  const { errors, p2pBytesByPeer, uploadedBytesByPeer, ...shown } = stats;
  document.getElementById("stats").textContent =
    JSON.stringify({ ...shown, errors }, null, 2);
}, 1000);

start();
