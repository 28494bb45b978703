counter = globals().get("counter", 0) + 1
print("this snippet ran", counter, "time(s) in this kernel")
