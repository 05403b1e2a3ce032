# custom-callbacks-v2.md "Modifying the Response in async_post_call_success_hook": the page's function,
# applied to a response lmgate returns, exactly as the proxy applies it.
import asyncio
import lmgate as litellm

async def async_post_call_success_hook(data, user_api_key_dict, response):
    # Add a custom header to the response
    additional_headers = getattr(response, "_hidden_params", {}).get("additional_headers", {}) or {}
    additional_headers["x-litellm-custom-header"] = "my-value"
    if not hasattr(response, "_hidden_params"):
        response._hidden_params = {}
    response._hidden_params["additional_headers"] = additional_headers
    return response

response = litellm.completion(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hi"}], mock_response="hi")
response = asyncio.run(async_post_call_success_hook({}, None, response))
print("header", response._hidden_params["additional_headers"]["x-litellm-custom-header"])
