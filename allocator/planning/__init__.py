"""Planning the days ahead on the IHTC-2024 problem: elective admissions, rooms, operating
theatres and nurse-to-room assignment (see docs/planning.md).

`model` reads instances and solutions, `evaluate` is the reference cost, `search` the compiled
moves, `planner.plan` the greedy + annealing + polish pipeline behind `wardflow plan`.
"""
