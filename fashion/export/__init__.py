"""fashion.export"""
