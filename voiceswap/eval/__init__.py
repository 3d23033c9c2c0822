"""The metric suite (stage 9), analysis plots (stage 10) and the results table.

One module per concern; every metric is a plain function on numpy arrays so that it can be
tested on cases with a known answer. Heavy third-party models (resemblyzer, Whisper through
faster-whisper, pocketsphinx, DNSMOS, WORLD/SPTK) are imported lazily inside the functions and
classes that use them, so importing a module that only needs maths stays cheap.
"""
