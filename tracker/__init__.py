"""The P2P tracker: an aiohttp WebSocket shell around `core.p2p.swarm.SwarmBook`."""
