-- wrk script: every request is the same small chat completion POST (the proxy answers from a mock).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
