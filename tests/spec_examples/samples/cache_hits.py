# custom-callbacks.txt "Cache hits": import lines changed; the stray quote in the page's f-string
# fixed; and the handler given the `states`/`errors` lists and the pre/post hooks that the page's own
# assertions read ("pre, post, success, success") but its class, as printed, never defines; its two
# one-second sleeps replaced by waiting for the callbacks (no test waits on time).
import os, time
import lmgate as litellm
from lmgate.integrations.custom_logger import CustomLogger
from lmgate import completion, acompletion, Cache

class MyCustomHandler(CustomLogger):
  states = []  # added: the page asserts on these
  errors = []

  def log_pre_api_call(self, model, messages, kwargs):  # added: "pre"
      self.states.append("pre")

  def log_post_api_call(self, kwargs, response_obj, start_time, end_time):  # added: "post"
      self.states.append("post")

  async def async_log_success_event(self, kwargs, response_obj, start_time, end_time): 
      print(f"On Success")
      print(f"Value of Cache hit: {kwargs['cache_hit']}")
      self.states.append("success")  # added

async def test_async_completion_azure_caching():
  customHandler_caching = MyCustomHandler()
  litellm.cache = Cache(type="redis", host=os.environ['REDIS_HOST'], port=os.environ['REDIS_PORT'], password=os.environ['REDIS_PASSWORD'])
  litellm.callbacks = [customHandler_caching]
  unique_time = time.time()
  response1 = await litellm.acompletion(model="azure/chatgpt-v-2",
                          messages=[{
                              "role": "user",
                              "content": f"Hi 👋 - i'm async azure {unique_time}"
                          }],
                          caching=True)
  await litellm.aflush_callbacks()  # changed: the page sleeps 1 s; this waits for the delivery itself
  print(f"customHandler_caching.states pre-cache hit: {customHandler_caching.states}")
  response2 = await litellm.acompletion(model="azure/chatgpt-v-2",
                          messages=[{
                              "role": "user",
                              "content": f"Hi 👋 - i'm async azure {unique_time}"
                          }],
                          caching=True)
  await litellm.aflush_callbacks()  # changed: the page sleeps 1 s (success callbacks run in parallel)
  print(f"customHandler_caching.states post-cache hit: {customHandler_caching.states}")
  assert len(customHandler_caching.errors) == 0
  assert len(customHandler_caching.states) == 4 # pre, post, success, success

import asyncio
asyncio.run(test_async_completion_azure_caching())
