--- The CLI's `why HOST:PORT [--udp] [--ready KIND]`: explain's sentence,
-- then one line per socket on that port; exit 0 when it is listening, 1
-- for every other state. Returns the command's entry of bin/tcp-port-used
-- (its usage line, options and run) given a function that returns the
-- module (loaded once the command runs) and the CLI's helpers.
return function(library, cli)
  local function line(l)
    local s = string.format("  %s %s%s", l.proto, l.address:find(":", 1, true) and
      "[" .. l.address .. "]:" .. l.port or l.address .. ":" .. l.port,
      l.queue and l.backlog and string.format(" queue %d/%d", l.queue, l.backlog) or "")
    if l.pid then s = s .. string.format(" pid %d (%s)", l.pid, l.command) end
    return s .. " user " .. (l.user or tostring(l.uid))
  end

  return {
    synopsis = "why [HOST:]PORT",
    summary = "why it is (not) ready: 0 listening, 1 any other state",
    options = { timeout = true, proto = true, ready = true },
    run = function(o, operands)
      if #operands ~= 1 then cli.usage_error("why takes one [HOST:]PORT") end
      local t = cli.parse_target(operands[1])
      local e = library().explain { port = t.port, host = t.host, proto = o.proto, ready = o.ready,
                              timeout_ms = o.timeout }
      if not cli.quiet() then
        print(e.state .. ": " .. e.text)
        for _, l in ipairs(e.listeners) do print(line(l)) end
      end
      return e.state == "listening" and cli.OK or cli.NO
    end,
  }
end
