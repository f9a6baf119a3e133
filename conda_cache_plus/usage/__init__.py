"""What uses each entry, and what may go: the usage graph, environment footprints, clean's
policies and plans, and carrying out a removal."""
