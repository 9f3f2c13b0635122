"""Templates for the memory bench's generated conversations (bench/memory_data.py), one set per language:
`<lang>_facts` (the user's profile and single facts), `<lang>_events` (dated events, facts that change, two-step
facts) and `<lang>_talk` (small talk and other people's facts)."""
