-- One POST per request, each with the next caller token from the file named
-- by BENCH_TOKENS (none when it is unset or empty).
local tokens = {}
local path = os.getenv("BENCH_TOKENS")
if path and path ~= "" then
  for line in io.lines(path) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
end
local i = 0
request = function()
  local headers = {}
  if #tokens > 0 then
    i = i % #tokens + 1
    headers["Authorization"] = "Bearer " .. tokens[i]
  end
  return wrk.format("POST", nil, headers, nil)
end
