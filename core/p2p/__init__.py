"""Sans-IO core of p2p-media-loader 2.3 compatibility (swarm ids, wire codec)."""
