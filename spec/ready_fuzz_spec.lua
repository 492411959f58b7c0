-- A seeded fuzz loop over the three readiness exchanges and the stream's
-- reader (transport/stream.lua), in pure Lua: the stream's raw reads are
-- faked (this spec only; every other readiness spec talks to real
-- servers) and serve replies that are valid, truncated, mutated, random,
-- or endless, in chunks of random sizes, ending in a close, a reset or a
-- timeout. Every result must be one of the documented shapes, no call may
-- raise, and no exchange may read without bound.
-- TPU_FUZZ_SEED and TPU_FUZZ_ROUNDS change the seed and the rounds.
local stream = require "tcp_port_used.transport.stream"
local ready = require "tcp_port_used.ready"

local SEED = tonumber(os.getenv("TPU_FUZZ_SEED")) or 20240611
local ROUNDS = tonumber(os.getenv("TPU_FUZZ_ROUNDS")) or 5000
-- What one exchange may read at most: a line's bound or a message's, a
-- few times over (a PostgreSQL startup reads several messages).
local MAX_READ = 64 * 32768 + 65536

local char, floor = string.char, math.floor
local random = math.random

local function int32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

local function pg_msg(t, body)
  return t .. int32(#body + 4) .. body
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = char(random(0, 255)) end
  return table.concat(t)
end

local function pick(list)
  return list[random(1, #list)]
end

-- Valid replies of each kind, and what each exchange must answer to them.
local VALID = {
  http = {
    { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true },
    { "HTTP/1.0 204\r\n\r\n", true },
    { "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n", true },
    { "HTTP/1.1 503 Service Unavailable\r\n\r\n", false, "status 503" },
    { "HTTP/1.1 404 Not Found\r\n\r\n", false, "status 404" },
    { "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", true },
  },
  redis = {
    { "+PONG\r\n", true },
    { "-NOAUTH Authentication required.\r\n", true },
    { "-WRONGPASS invalid username-password pair\r\n", true },
    { "-NOPERM this user has no permissions\r\n", true },
    { "-LOADING Redis is loading the dataset in memory\r\n", false, "loading" },
    { "-BUSY Redis is busy running a script.\r\n", false, "busy" },
    { "-MASTERDOWN Link with MASTER is down\r\n", false, "master down" },
  },
  postgres = {
    { pg_msg("R", int32(10) .. "SCRAM-SHA-256\0\0"), true },
    { pg_msg("R", int32(5) .. "salt"), true },
    { pg_msg("R", int32(3)), true },
    { pg_msg("R", int32(0)) .. pg_msg("S", "server_version\00015.18\0") ..
      pg_msg("K", int32(1234) .. int32(5678)) .. pg_msg("Z", "I"), true },
    { pg_msg("E", "SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"),
      false, "the database system is starting up" },
    { pg_msg("E", "SFATAL\0C57P03\0\0"), false, "starting up" },
    { pg_msg("E", "SFATAL\0VFATAL\0C28000\0Mrole \"x\" does not exist\0\0"), true },
  },
}

local function mutate(s)
  local n = #s
  for _ = 1, random(1, 4) do
    local op, i = random(1, 4), random(1, math.max(n, 1))
    if op == 1 and n > 0 then
      s = s:sub(1, i - 1) .. char(random(0, 255)) .. s:sub(i + 1)
    elseif op == 2 then
      s = s:sub(1, i - 1) .. random_bytes(random(1, 8)) .. s:sub(i)
    elseif op == 3 and n > 0 then
      s = s:sub(1, i - 1) .. s:sub(i + random(1, 8))
    else
      s = s:sub(1, i) .. s:sub(i, i):rep(random(1, 16)) .. s:sub(i + 1)
    end
    n = #s
  end
  return s
end

-- The raw reads of the fake: the reply in chunks, then how it ends; an
-- endless reply never ends.
local Fake = stream.class {
  _read = function(self)
    if self.endless then
      local chunk = self.endless(self)
      self.read = self.read + #chunk
      if self.read > MAX_READ then error("read more than " .. MAX_READ .. " bytes", 0) end
      return chunk
    end
    local reply, at = self.reply, self.at
    if at > #reply then return self.ending[1], self.ending[2] end
    local chunk = reply:sub(at, at + random(1, 64) - 1)
    self.at = at + #chunk
    return chunk
  end,
  _write = function(self, data)
    if self.write_fails then return nil, self.write_fails end
    self.sent = self.sent + #data
    return true
  end,
  _close = function() end,
}

local ENDINGS = { { "" }, { nil, "ECONNRESET" }, { nil, "ETIMEDOUT" } }

local function shape(r, err, code)
  if r == true then return err == nil and code == nil end
  if r == false then return err == nil or type(err) == "string" end
  return r == nil and type(err) == "string" and type(code) == "string" and
    code:match("^E[A-Z]+$") ~= nil
end

local function run(kind, fake)
  local exchange = ready.exchange { ready = kind }
  local s = stream.new(Fake, fake)
  local ok, r, err, code = pcall(exchange, s, 8080)
  if not ok then error("the " .. kind .. " exchange raised: " .. tostring(r), 0) end
  return r, err, code
end

local function describe_case(kind, reply)
  return string.format("seed %d, %s, reply %q", SEED, kind, reply or "(endless)")
end

describe("the readiness exchanges under fuzzed replies", function()
  math.randomseed(SEED)

  for _, kind in ipairs { "http", "redis", "postgres" } do
    it(kind .. ": answers what the SPEC says to each valid reply, in any chunking", function()
      for _, v in ipairs(VALID[kind]) do
        for _ = 1, 20 do
          local r, err = run(kind, { reply = v[1], at = 1, ending = pick(ENDINGS), sent = 0 })
          assert.are.equal(v[2], r, describe_case(kind, v[1]))
          assert.are.equal(v[3], err, describe_case(kind, v[1]))
        end
      end
    end)

    it(kind .. ": gives a documented shape to truncated, mutated and random replies", function()
      for _ = 1, ROUNDS do
        local valid = pick(VALID[kind])
        local base = valid[1]
        local how = random(1, 4)
        local reply
        if how == 1 then
          reply = base:sub(1, random(0, #base - 1))
        elseif how == 2 then
          reply = mutate(base)
        elseif how == 3 then
          reply = random_bytes(random(0, 200))
        else
          reply = mutate(base:sub(1, random(0, #base)))
        end
        local r, err, code = run(kind, { reply = reply, at = 1, ending = pick(ENDINGS), sent = 0,
                                         write_fails = random(1, 50) == 1 and "EPIPE" or nil })
        assert.is_true(shape(r, err, code), describe_case(kind, reply) .. " gave " ..
          tostring(r) .. ", " .. tostring(err) .. ", " .. tostring(code))
        if how == 1 then
          -- a valid reply cut short: the answer to it, if what was cut is
          -- what the exchange does not read; else the stream's error
          -- (never a protocol error, never another answer)
          if r == nil then
            assert.are_not.equal("EPROTO", code, describe_case(kind, reply))
          else
            assert.same({ valid[2], valid[3] }, { r, err }, describe_case(kind, reply))
          end
        end
      end
    end)

    it(kind .. ": stops reading a reply that never ends", function()
      for _ = 1, 20 do
        local valid = pick(VALID[kind])[1]
        local prefix = valid:sub(1, random(0, math.min(8, #valid - 1)))
        local fill = random_bytes(1):gsub("\n", "x")
        local r, err, code = run(kind, { read = 0, sent = 0, endless = function(self)
          if self.read == 0 and prefix ~= "" then return prefix end
          return fill:rep(random(1, 4096))
        end })
        assert.is_true(shape(r, err, code), describe_case(kind, prefix))
        -- (an authentication request in the prefix is a PostgreSQL ready)
        if kind ~= "postgres" then assert.are.equal("EPROTO", code, describe_case(kind, prefix)) end
      end
    end)
  end
end)
