# custom-callbacks-v2.md "Performance Issues": the SafeHandler sample, registered and called once.
# `external_service` is undefined on the page; the handler's except clause is what the page demonstrates.
import lmgate as litellm
from lmgate.integrations.custom_logger import CustomLogger
import asyncio

class SafeHandler(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        try:
            await external_service(response_obj)
        except Exception as e:
            print(f"Callback error: {e}")  # Log but don't break the flow

litellm.callbacks = [SafeHandler()]

async def main():
    r = await litellm.acompletion(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hello"}])
    print("call returned", r.choices[0].message.content)

asyncio.run(main())
