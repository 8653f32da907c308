// The peer of bench/tracker.py: the npm bittorrent-tracker 11 server, WebSocket only, on a free
// loopback port. Prints {"url": "http://127.0.0.1:PORT"} once listening; SIGTERM stops it.

import Server from 'bittorrent-tracker/server' // not the index: it loads the WebRTC client

const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('error', error => {
  process.stderr.write(`bittorrent-tracker: ${error.message}\n`)
  process.exit(1)
})
server.on('warning', () => {}) // bad input from a client: the client gets a failure reason
server.on('listening', () => {
  const { port } = server.ws.address()
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n')
})
server.listen(0, '127.0.0.1')
process.on('SIGTERM', () => server.close(() => process.exit(0)))
