// The load generator of bench/tracker.py: WebSocket peers speaking p2p-media-loader 2.3's
// tracker messages (shared/reference/p2p.md 1a) to one tracker, Shoal's or bittorrent-tracker's.
//
//   node load.mjs --url ws://127.0.0.1:PORT/announce [--connections 1000] [--swarm 20]
//                 [--offers 5] [--warmup 2] [--duration 10]
//
// 1. join: opens --connections sockets (peers of swarms of --swarm peers each), each announces
//    `started` with --offers offers; every relayed offer is answered. When the tracker has gone
//    quiet it prints {"phase": "joined", ...} and waits for a line on stdin (the bench reads the
//    server's memory meanwhile).
// 2. load: each peer announces again (an update with fresh offers) as soon as its previous
//    announce is answered, so every peer always has one announce in flight; relayed offers are
//    answered at once. After --warmup s it prints {"phase": "counting"} and counts what the tracker sends for --duration s and
//    prints {"phase": "done", "responses", "announce_replies", "offers", "answers", ...,
//    "cpu": <this process's CPU seconds per second>}. Then it closes everything and exits.
//
// Sockets offer permessage-deflate, as browsers do; a server may accept it or not.

import { createInterface } from 'node:readline'
import WebSocket from 'ws'

function options (argv) {
  const defaults = { url: '', connections: 1000, swarm: 20, offers: 5, warmup: 2, duration: 10 }
  const result = { ...defaults }
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '')
    if (!(key in defaults)) throw new Error(`unknown option ${argv[i]}`)
    result[key] = key === 'url' ? argv[i + 1] : Number(argv[i + 1])
  }
  if (!result.url) throw new Error('--url is required')
  return result
}

const opts = options(process.argv)
const SDP_LENGTH = 760 // a Chromium data-channel offer without trickle (p2p.md 1a)
const OPEN_AT_ONCE = 100 // connection attempts in flight while joining
const QUIET_MS = 500 // the join phase ends when nothing arrived for this long
const JOIN_TIMEOUT_MS = 60_000

function sdp (kind, n) {
  const head = [
    'v=0', `o=- ${4629436592519876n + BigInt(n)} 2 IN IP4 127.0.0.1`, 's=-', 't=0 0',
    'a=group:BUNDLE 0', 'a=extmap-allow-mixed', 'a=msid-semantic: WMS',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'c=IN IP4 0.0.0.0',
    `a=candidate:1467250027 1 udp 2122260223 10.99.0.${n % 250 + 1} ${40000 + n % 20000} typ ` +
      'host generation 0 network-id 1',
    `a=candidate:${2000000000 + n} 1 udp 1686052607 203.0.113.7 ${40000 + n % 20000} typ srflx ` +
      'raddr 10.99.0.1 rport 40000 generation 0 network-id 1',
    'a=ice-ufrag:Xr1f', 'a=ice-pwd:8Qw3ZbYt0tKQ3uPz1tYw5m9d', 'a=ice-options:trickle',
    'a=fingerprint:sha-256 ' +
      Array.from({ length: 32 }, (_, i) => ((i * 37 + n) % 256).toString(16).padStart(2, '0'))
        .join(':').toUpperCase(),
    `a=setup:${kind === 'offer' ? 'actpass' : 'active'}`, 'a=mid:0', 'a=sctp-port:5000',
    'a=max-message-size:262144'
  ].join('\r\n') + '\r\n'
  const pad = 'a=x-pad:' + 'p'.repeat(Math.max(0, SDP_LENGTH - head.length - 10)) + '\r\n'
  return { type: kind, sdp: (head + pad).slice(0, SDP_LENGTH) }
}

function latin1Id (n, salt) {
  // 20 random-looking bytes as a latin-1 "binary string", as bittorrent-tracker's client sends.
  let text = ''
  let x = (n * 2654435761 + salt * 40503) >>> 0
  for (let i = 0; i < 20; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    text += String.fromCharCode(x >>> 24)
  }
  return text
}

const swarms = Math.ceil(opts.connections / opts.swarm)
const infoHash = s => `bench-swarm-${String(s).padStart(8, '0')}`
const peerId = n => `-PM0203-${n.toString(36).padStart(12, '0')}`

class Peer {
  constructor (n) {
    this.n = n
    this.peerId = peerId(n)
    this.infoHash = infoHash(n % swarms)
    this.answerSdp = sdp('answer', n)
    this.round = 0
    this.ws = null
  }

  announce (event) {
    this.round += 1
    const offers = []
    for (let i = 0; i < opts.offers; i++) {
      offers.push({ offer: OFFERS[(this.n + i) % OFFERS.length], offer_id: latin1Id(this.n, this.round * 8 + i) })
    }
    const message = {
      numwant: opts.offers, uploaded: 0, downloaded: 0, action: 'announce',
      info_hash: this.infoHash, peer_id: this.peerId, offers
    }
    if (event) message.event = event
    this.ws.send(JSON.stringify(message))
  }

  answer (offer) {
    this.ws.send(JSON.stringify({
      action: 'announce', info_hash: this.infoHash, peer_id: this.peerId,
      to_peer_id: offer.peer_id, answer: this.answerSdp, offer_id: offer.offer_id
    }))
  }
}

const OFFERS = Array.from({ length: 64 }, (_, i) => sdp('offer', i))
const stats = { replies: 0, offers: 0, answers: 0, failures: 0, other: 0 }
const failureReasons = {}
let counting = false
let loading = false
let lastMessage = Date.now()
let closedEarly = 0

function onMessage (peer, data) {
  lastMessage = Date.now()
  const message = JSON.parse(data)
  let kind
  if (message['failure reason'] !== undefined) {
    kind = 'failures'
    failureReasons[message['failure reason']] = (failureReasons[message['failure reason']] || 0) + 1
  } else if (message.offer !== undefined) {
    kind = 'offers'
    peer.answer(message)
  } else if (message.answer !== undefined) {
    kind = 'answers'
  } else if (message.interval !== undefined) {
    kind = 'replies'
    if (loading) peer.announce(null)
  } else {
    kind = 'other'
  }
  if (counting) stats[kind] += 1
}

function connect (peer) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(opts.url, { perMessageDeflate: true })
    peer.ws = ws
    ws.on('open', () => { peer.announce('started'); resolve() })
    ws.on('message', data => onMessage(peer, data))
    ws.on('error', reject)
    ws.on('close', () => { if (loading || counting) closedEarly += 1 })
  })
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const print = record => process.stdout.write(JSON.stringify(record) + '\n')

async function join (peers) {
  const started = Date.now()
  let next = 0
  async function opener () {
    while (next < peers.length) await connect(peers[next++])
  }
  await Promise.all(Array.from({ length: OPEN_AT_ONCE }, opener))
  while (Date.now() - lastMessage < QUIET_MS) {
    if (Date.now() - started > JOIN_TIMEOUT_MS) throw new Error('the tracker never went quiet')
    await sleep(50)
  }
  return (Date.now() - started) / 1000
}

async function waitForGo () {
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() === 'go') break
  }
  lines.close()
}

async function main () {
  const peers = Array.from({ length: opts.connections }, (_, n) => new Peer(n))
  const joinSeconds = await join(peers)
  print({ phase: 'joined', connections: peers.length, swarms, seconds: joinSeconds })
  await waitForGo()
  loading = true
  for (const peer of peers) peer.announce(null)
  await sleep(opts.warmup * 1000)
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  counting = true
  print({ phase: 'counting' })
  await sleep(opts.duration * 1000)
  counting = false
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  loading = false
  const responses = stats.replies + stats.offers + stats.answers
  print({
    phase: 'done',
    seconds,
    responses,
    responses_per_s: responses / seconds,
    announce_replies: stats.replies,
    offers: stats.offers,
    answers: stats.answers,
    failures: stats.failures,
    failure_reasons: failureReasons,
    other: stats.other,
    closed_early: closedEarly,
    cpu: (cpu.user + cpu.system) / 1e6 / seconds
  })
  for (const peer of peers) peer.ws.terminate()
}

main().then(() => process.exit(0), error => {
  process.stderr.write(`load: ${error.stack || error}\n`)
  process.exit(1)
})
