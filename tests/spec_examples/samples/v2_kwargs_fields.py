# custom-callbacks-v2.md "What's Available in kwargs?" + "Track API Costs" + "Log Inputs to LLMs" +
# "Send to External Service": only the import lines changed; the page shows the functions, this file
# registers them as the page says and makes one call each (`requests` is a stub module).
import lmgate as litellm
from lmgate import completion
import requests

def custom_callback(kwargs, completion_response, start_time, end_time):
    # Access common data
    model = kwargs.get("model")
    messages = kwargs.get("messages", [])
    cost = kwargs.get("response_cost", 0)
    cache_hit = kwargs.get("cache_hit", False)

    # Access metadata you passed in
    metadata = kwargs.get("litellm_params", {}).get("metadata", {})
    print("fields", model, messages, cost, cache_hit, metadata)

def track_cost_callback(kwargs, completion_response, start_time, end_time):
    cost = kwargs["response_cost"]  # litellm calculates this for you
    print(f"Request cost: ${cost}")

def get_transformed_inputs(kwargs):
    params_to_model = kwargs["additional_args"]["complete_input_dict"]
    print("params to model", params_to_model)

def send_to_analytics(kwargs, completion_response, start_time, end_time):
    data = {
        "model": kwargs.get("model"),
        "cost": kwargs.get("response_cost", 0),
        "duration": (end_time - start_time).total_seconds()
    }
    requests.post("https://your-analytics.com/api", json=data)

litellm.success_callback = [custom_callback, track_cost_callback, send_to_analytics]
litellm.input_callback = [get_transformed_inputs]

response = completion(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hello"}], metadata={"k": "v"})
response = completion(model="claude-2", messages=[{"role": "user", "content": "Hello"}])
