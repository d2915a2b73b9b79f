"""fashion.train"""
