"""The pure translation core: Anthropic Messages <-> OpenAI Chat Completions.

Rule: standard library only. No aiohttp, Qt, asyncio, sockets or clocks here;
ids, times and model facts come in as arguments (tests/unit/test_layering.py).
"""
