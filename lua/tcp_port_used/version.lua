--- The version of tcp-port-used, for the Lua code that runs without the C
-- core (tcp_port_used.core._VERSION says the same; a spec keeps them equal).
return "0.2.0"
