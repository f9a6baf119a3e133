"""Gateways to the disk and the network: archives read and extracted, downloads, locks, private
directories, state files, urls.txt. Built on the model; knows no cache layout."""
