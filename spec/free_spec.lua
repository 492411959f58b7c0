local tpu = require "tcp_port_used"
local H = require "helpers"

local socket = require "socket"

-- Whether a server could listen on port now, on host or on every address.
local function bindable(port, host)
  local s = socket.tcp()
  local ok = s:bind(host or "0.0.0.0", port)
  s:close()
  return ok == 1
end

describe("find_free", function()
  it("asks the kernel for a port when no range is given", function()
    local p = tpu.find_free()
    assert.is_number(p)
    assert.is_true(bindable(p), "port " .. p)
    local p4 = tpu.find_free { host = "127.0.0.1" }
    assert.is_true(bindable(p4, "127.0.0.1"), "port " .. p4)
  end)

  it("gives a port free on every address of a name", function()
    local p = assert(tpu.find_free { host = "localhost" })
    assert.is_false(tpu.check { port = p, host = "localhost", mode = "bind" })
  end)

  it("gives the lowest free port of a range, skipping held and excluded ones", function()
    local l = H.listen("127.0.0.1")
    finally(l.close)
    local to = math.min(l.port + 50, 65535)
    -- the free ports of the range, lowest first, as a server would find them
    local free = {}
    for port = l.port, to do
      if bindable(port, "127.0.0.1") then free[#free + 1] = port end
    end
    assert.is_true(#free >= 2, "fewer than two free ports in " .. l.port .. ".." .. to)
    -- the listener's port is held: the lowest free one is after it
    local p = tpu.find_free { host = "127.0.0.1", from = l.port, to = to }
    assert.equals(free[1], p)
    assert.is_true(p > l.port)
    -- excluded, the next free one
    local q = tpu.find_free { host = "127.0.0.1", from = l.port, to = to, exclude = { p } }
    assert.equals(free[2], q)
  end)

  it("without a host, skips a port held on any single address", function()
    local l = H.listen("127.0.0.1")
    local p = tpu.find_free { from = l.port, to = l.port }
    l.close()
    assert.is_nil(p)
  end)

  it("returns nil, err when the range is exhausted", function()
    local l = H.listen("127.0.0.1")
    local p, err, code = tpu.find_free { host = "127.0.0.1", from = l.port, to = l.port }
    assert.is_nil(p)
    assert.equals("bind 127.0.0.1: no free port in " .. l.port .. ".." .. l.port, err)
    assert.equals("EADDRINUSE", code)
    local free = H.free_port()
    p, err = tpu.find_free { host = "127.0.0.1", from = free, to = free, exclude = { free } }
    assert.is_nil(p)
    assert.matches("no free port", err, 1, true)
    l.close()
  end)

  it("returns an error, never a port, when the host is not this machine's", function()
    local p, err, code = tpu.find_free { host = "192.0.2.1" }
    assert.is_nil(p)
    assert.equals("EADDRNOTAVAIL", code)
    assert.matches("bind 192.0.2.1", err, 1, true)
    p, err, code = tpu.find_free { host = "192.0.2.1", from = 20000, to = 20010 }
    assert.is_nil(p)
    assert.equals("EADDRNOTAVAIL", code)
    assert.matches("bind 192.0.2.1:20000", err, 1, true)
  end)

  it("avoids excluded ports when the kernel picks", function()
    local first = tpu.find_free { host = "127.0.0.1" }
    local seen = {}
    for _ = 1, 20 do
      local p = tpu.find_free { host = "127.0.0.1", exclude = { first } }
      assert.is_true(p ~= first)
      seen[p] = true
    end
    assert.is_true(next(seen) ~= nil)
  end)

  it("leaves no file descriptor behind", function()
    local before = H.fd_count()
    local from = math.min(H.free_port(), 65525)
    for _ = 1, 50 do
      tpu.find_free()
      tpu.find_free { host = "localhost" }
      tpu.find_free { from = from, to = from + 10 }
    end
    assert.equals(before, H.fd_count())
  end)

  it("raises on bad arguments, naming them", function()
    local function raises(pattern, o)
      local ok, err = pcall(function()
        local r = tpu.find_free(o)
        return r
      end)
      assert.is_false(ok)
      assert.matches(pattern, err, 1, true)
      assert.matches("free_spec.lua", err, 1, true)
    end
    raises("bad argument #1 to 'find_free' (from must be an integer in 1..65535, got 0)", { from = 0 })
    raises("to must be an integer in 1..65535, got 70000", { to = 70000 })
    raises("to must not be below from (30000), got 20000", { from = 30000, to = 20000 })
    raises("exclude[2] must be an integer in 1..65535, got \"x\"", { exclude = { 80, "x" } })
    raises("exclude must be a list of ports, got 5", { exclude = 5 })
    raises("host must be a string or nil, got 5", { host = 5 })
    raises("unknown option 'port'", { port = 5 })
    raises("options must be a table or nil, got 5", 5)
  end)
end)
