"""fashion.demo"""
