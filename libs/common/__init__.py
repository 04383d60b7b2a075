"""The shared floor of every PAS service: settings, wire types, service kit, clients."""
