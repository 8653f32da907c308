"""Browser interop: headless Chromium with hls.js and p2p-media-loader against Shoal."""
