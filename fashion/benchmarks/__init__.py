"""fashion.benchmarks"""
